// OAuth completion (/oauth/complete#code=…&redirect_to=… or #error=<code>): trade the one-time
// login code for a session (refresh token in the HttpOnly cookie), then go on.

import { exchangeOAuthCode } from "../api.js";
import { h, messagesOf } from "../dom.js";

const ERRORS = {
  "provider-denied": "The sign-in was cancelled or refused at the provider.",
  "invalid-token": "This sign-in link is invalid or has expired. Please start again.",
  unauthenticated: "The sign-in could not be completed in this browser. Please start again.",
  conflict: "This external account cannot be used here: it is linked to another account, or the provider did not confirm its e-mail address.",
  "not-found": "This sign-in provider is not available.",
  "service-unavailable": "The sign-in provider cannot be reached right now. Try again later.",
  "upstream-error": "The sign-in provider answered with an error. Try again later.",
  "rate-limited": "Too many sign-in attempts. Wait a minute and try again.",
};

export async function render(main, ctx) {
  const params = new URLSearchParams(location.hash.slice(1));
  history.replaceState(null, "", location.pathname); // the code works once: keep it out of history
  const section = h(
    "section",
    { class: "narrow", "aria-labelledby": "oauth-title" },
    h("h1", { id: "oauth-title", text: "Signing in" }),
  );
  main.append(section);
  const failed = (lines) => {
    section.append(
      h("div", { class: "banner banner-error", role: "alert" }, lines.map((text) => h("p", { text }))),
      h("p", {}, h("a", { href: "/login", text: "Back to sign in" })),
    );
  };
  const error = params.get("error");
  const code = params.get("code");
  if (error || !code) {
    failed([ERRORS[error] || `The sign-in failed (${error || "no code"}).`]);
    return;
  }
  const status = h("p", { role: "status", text: "Completing the sign-in…" });
  section.append(status);
  try {
    await exchangeOAuthCode(code);
  } catch (problem) {
    status.remove();
    failed(messagesOf(problem));
    return;
  }
  ctx.navigate(localTarget(params.get("redirect_to")), { replace: true });
}

/** The redirect_to of the fragment when it is on this site, else the chat. */
function localTarget(target) {
  if (!target) return "/chat";
  try {
    const url = new URL(target, location.href);
    if (url.origin === location.origin && url.pathname !== "/oauth/complete") return url.pathname + url.search;
  } catch {
    // not a URL: the default
  }
  return "/chat";
}
