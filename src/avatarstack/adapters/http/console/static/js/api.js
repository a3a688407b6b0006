// The HTTP API client. The access token lives in this module's memory only (never localStorage
// or sessionStorage); the refresh token is an HttpOnly cookie the page cannot read, sent only to
// /api/v1/auth/cookie/*. On a 401 the client refreshes once through the cookie and retries.
// Errors are ApiError objects built from the RFC 9457 problem document.

const API = "/api/v1";
const LOCK = "avatarstack-refresh";

let accessToken = null;
let currentUser = null;
let refreshing = null;
let renewTimer = null;
const listeners = new Set();
// tells the other tabs of this site that the user signed out (no token ever goes through it)
const tabs = typeof BroadcastChannel === "function" ? new BroadcastChannel("avatarstack-auth") : null;
tabs?.addEventListener("message", (event) => {
  if (event.data === "signed-out" && accessToken) forget();
});

export class ApiError extends Error {
  constructor(status, problem = {}, retryAfter = null) {
    let detail = problem.detail || problem.title || defaultDetail(status);
    if (status === 429 && retryAfter !== null) detail = `${detail.replace(/[.\s]+$/, "")}. Try again in ${retryAfter} s.`;
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.code = String(problem.type || "").replace("urn:avatarstack:problem:", "") || null;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    this.retryAfter = retryAfter;
  }
}

function defaultDetail(status) {
  if (status === 0) return "The server cannot be reached. Check your connection and try again.";
  if (status === 429) return "Too many attempts.";
  if (status >= 500) return "The server could not do this right now.";
  return `The request failed (${status}).`;
}

/** The signed-in user (from the last token response or /users/me), or null. */
export function user() {
  return currentUser;
}

export function token() {
  return accessToken;
}

export function hasRole(...roles) {
  return Boolean(currentUser && roles.some((role) => currentUser.roles.includes(role)));
}

/** fn(user|null) after every sign-in, refresh, profile change and sign-out. */
export function onAuthChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function notify() {
  for (const fn of listeners) fn(currentUser);
}

export function setUser(profile) {
  currentUser = profile;
  notify();
}

function adopt(tokens) {
  accessToken = tokens.access_token;
  currentUser = tokens.user;
  clearTimeout(renewTimer);
  // renew a minute before the access token expires, so sockets can re-authenticate in time
  const seconds = Math.max(10, Number(tokens.expires_in || 900) - 60);
  renewTimer = setTimeout(() => refreshSession().catch(() => {}), seconds * 1000);
  notify();
  return currentUser;
}

/** Forget the session in this page (the server already ended it). */
export function forget() {
  accessToken = null;
  currentUser = null;
  clearTimeout(renewTimer);
  notify();
}

async function send(path, { method = "GET", body, form, auth = true, query } = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  let payload;
  if (form) {
    payload = form;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  if (auth && accessToken) headers.Authorization = `Bearer ${accessToken}`;
  let url = path.startsWith("/") ? path : `${API}/${path}`;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
    }
    if ([...params].length) url += `?${params}`;
  }
  try {
    return await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
  } catch {
    throw new ApiError(0);
  }
}

async function parse(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const header = response.headers.get("Retry-After");
    const retry = header !== null && /^\d+$/.test(header.trim()) ? Number(header) : null;
    throw new ApiError(response.status, data || {}, retry);
  }
  return data;
}

/**
 * Call the API: api("kb/documents"), api("auth/login", {method: "POST", body: {...}}).
 * A 401 refreshes the session once through the cookie and retries; when that fails the session
 * is over (onAuthChange(null)).
 */
export async function api(path, options = {}) {
  let response = await send(path, options);
  if (response.status === 401 && options.auth !== false && accessToken) {
    // a refresh that cannot reach the server throws (the session may be fine); a refused one
    // ends the session in this page
    const renewed = await refreshSession();
    if (!renewed) {
      forget();
      return parse(response);
    }
    response = await send(path, options);
  }
  return parse(response);
}

/**
 * Exchange the refresh cookie for a new access token. One refresh at a time in this tab (one
 * in-flight promise) and across tabs (a Web Lock, where the browser has them): the cookie
 * rotates, and presenting the old one twice would end the session. Resolves true when signed in.
 */
export function refreshSession() {
  if (!refreshing) {
    const run = async () => {
      const response = await send("auth/cookie/refresh", { method: "POST", auth: false });
      if (response.status === 401 || response.status === 403) {
        if (accessToken) forget();
        return false;
      }
      adopt(await parse(response));
      return true;
    };
    const locked = navigator.locks ? navigator.locks.request(LOCK, run) : run();
    refreshing = locked.finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

export async function login(email, password) {
  const tokens = await api("auth/login", {
    method: "POST",
    auth: false,
    body: { email, password, refresh_cookie: true },
  });
  return adopt(tokens);
}

export async function exchangeOAuthCode(code) {
  const tokens = await api("auth/oauth/exchange", {
    method: "POST",
    auth: false,
    body: { code, refresh_cookie: true },
  });
  return adopt(tokens);
}

/** End this session on the server and forget the tokens, whatever the server answers. */
export async function logout() {
  try {
    if (accessToken) await send("auth/logout", { method: "POST", body: {} });
  } finally {
    try {
      await send("auth/cookie/logout", { method: "POST", auth: false });
    } finally {
      forget();
      tabs?.postMessage("signed-out");
    }
  }
}

/** The console's configuration; defaults when the server does not offer it. */
export async function consoleConfig() {
  try {
    return await api("console/config", { auth: false });
  } catch {
    return {
      avatar_provider: "text",
      livekit_client_url: "/console/vendor/livekit-client/livekit-client.esm.mjs",
      voice_input: "browser",
      version: "",
    };
  }
}
