// Boot and router. Restores the session through the refresh cookie, then renders the page of
// the current path (History API; the server answers index.html for every page path). Each page
// module exports render(main, ctx) and may return a cleanup function.

import { consoleConfig, forget, hasRole, logout, onAuthChange, refreshSession, user } from "./api.js";
import { h, replace } from "./dom.js";
import { Realtime } from "./ws.js";

const PUBLIC_PAGES = {
  "/login": ["login", "Sign in"],
  "/register": ["register", "Create an account"],
  "/forgot-password": ["password", "Forgot password"],
  "/reset-password": ["password", "Set a new password"],
  "/oauth/complete": ["oauth", "Signing in"],
};
const PRIVATE_PAGES = {
  "/chat": ["chat", "Chat"],
  "/knowledge": ["knowledge", "Knowledge"],
  "/profile": ["profile", "Profile"],
  "/admin": ["admin", "Admin"],
};
// public pages a signed-in user may still use (the e-mail links)
const ALWAYS = new Set(["/reset-password", "/oauth/complete"]);

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const banner = document.getElementById("offline-banner");
const notices = document.getElementById("notices");
const ctx = { config: null, realtime: null, navigate, notice, after: null };
let cleanup = null;
let renderCount = 0;

export function notice(text) {
  const item = h("p", { class: "notice", text });
  notices.append(item);
  setTimeout(() => item.remove(), 8000);
}

export function navigate(path, { replace: replaceEntry = false } = {}) {
  if (replaceEntry) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  route();
}

function pageOf(pathname) {
  if (pathname.startsWith("/chat/")) return ["chat", "Chat", true];
  if (PRIVATE_PAGES[pathname]) return [...PRIVATE_PAGES[pathname], true];
  if (PUBLIC_PAGES[pathname]) return [...PUBLIC_PAGES[pathname], false];
  return null;
}

async function route() {
  const { pathname, search } = location;
  const params = new URLSearchParams(search);
  const signedIn = Boolean(user());
  if (pathname === "/" || !pageOf(pathname)) {
    if (signedIn && (params.has("verified") || params.has("verify_error"))) {
      notice(params.has("verified") ? "Your e-mail address is verified." : verifyText(params));
    }
    const target = signedIn ? "/chat" : `/login${search}`;
    history.replaceState(null, "", target);
    return route();
  }
  const [module, title, needsAuth] = pageOf(pathname);
  if (needsAuth && !signedIn) {
    ctx.after = pathname;
    history.replaceState(null, "", "/login");
    return route();
  }
  if (!needsAuth && signedIn && !ALWAYS.has(pathname)) {
    history.replaceState(null, "", "/chat");
    return route();
  }
  if (cleanup) {
    const previous = cleanup;
    cleanup = null;
    previous();
  }
  const count = ++renderCount;
  document.title = `${title} · avatarstack`;
  markNav(pathname);
  // the previous page is cleaned up: take its forms away now, not after the next module has
  // loaded, so nobody types into a page that is already gone (its submit would send nothing)
  replace(main);
  main.setAttribute("aria-busy", "true");
  let page;
  try {
    page = await import(`./pages/${module}.js`);
  } catch {
    if (count !== renderCount) return undefined; // a later navigation owns the page now
    main.removeAttribute("aria-busy");
    replace(main, h("h1", { text: title }), h("p", { role: "alert", class: "banner banner-error", text: "This page could not be loaded. Check the connection and reload." }));
    return undefined;
  }
  if (count !== renderCount) return undefined;
  main.removeAttribute("aria-busy");
  cleanup = (await page.render(main, ctx)) || null;
  // after a navigation inside the page, focus moves to the new page's heading (as a page load
  // would); the first page leaves it at the start, where the skip link comes first
  const heading = main.querySelector("h1");
  if (heading && count > 1) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
  return undefined;
}

export function verifyText(params) {
  const code = params.get("verify_error") || "";
  if (code === "invalid-token") {
    return "This verification link is invalid, was already used or has expired. Sign in to get a new one.";
  }
  return `The e-mail address could not be verified (${code || "unknown error"}). Try the link again or ask for a new one.`;
}

function markNav(pathname) {
  for (const link of nav.querySelectorAll("a[data-nav]")) {
    const active = pathname === `/${link.dataset.nav}` || pathname.startsWith(`/${link.dataset.nav}/`);
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showNav(current) {
  nav.hidden = !current;
  for (const item of nav.querySelectorAll("[data-role=admin]")) item.hidden = !hasRole("admin");
}

function startRealtime() {
  if (ctx.realtime) return;
  const realtime = new Realtime();
  realtime.addEventListener("state", (event) => {
    banner.hidden = !(event.detail === "reconnecting" || event.detail === "offline");
  });
  realtime.addEventListener("ended", () => {
    notice("Your session has ended. Please sign in again.");
    if (user()) forget(); // → onAuthChange(null) → signedOut()
    else signedOut();
  });
  ctx.realtime = realtime;
  realtime.start();
}

function stopRealtime() {
  if (!ctx.realtime) return;
  ctx.realtime.close();
  ctx.realtime = null;
  banner.hidden = true;
}

function signedOut() {
  stopRealtime();
  if (pageOf(location.pathname)?.[2]) navigate("/login", { replace: true });
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || link.target) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !(url.pathname === "/" || pageOf(url.pathname))) return;
  event.preventDefault();
  navigate(url.pathname + url.search + url.hash);
});

window.addEventListener("popstate", () => route());

document.getElementById("sign-out").addEventListener("click", async () => {
  await logout().catch(() => {});
  navigate("/login", { replace: true });
});

async function boot() {
  ctx.config = await consoleConfig();
  let reachable = true;
  try {
    await refreshSession();
  } catch {
    reachable = false; // the server is down: show the public pages and try again shortly
  }
  banner.hidden = reachable;
  onAuthChange((current) => {
    showNav(current);
    if (current) startRealtime();
    else signedOut();
  });
  showNav(user());
  if (user()) startRealtime();
  await route();
  if (!reachable) retryBoot();
}

function retryBoot() {
  setTimeout(async () => {
    try {
      const signedIn = await refreshSession();
      banner.hidden = true;
      if (signedIn) await route();
    } catch {
      retryBoot();
    }
  }, 3000);
}

boot();
