// Forgot password (/forgot-password) and the reset link's landing (/reset-password#token=…).
// The token is read from the fragment and removed from the address bar at once.

import { api } from "../api.js";
import { alertBox, busy, field, h, replace } from "../dom.js";

export async function render(main) {
  if (location.pathname === "/reset-password") renderReset(main);
  else renderForgot(main);
}

function renderForgot(main) {
  const alert = alertBox();
  const email = field("Email", { type: "email", name: "email", autocomplete: "email", required: true });
  const submit = h("button", { type: "submit", class: "primary", text: "Send reset link" });
  const form = h("form", { class: "card form", novalidate: true }, alert.el, email.wrap, submit);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, alert, async () => {
      const address = email.control.value.trim();
      await api("auth/password/forgot", { method: "POST", auth: false, body: { email: address } });
      replace(form, h("p", { role: "status", class: "banner banner-success", text: `If ${address} has an account, a reset link is on its way. It works for one hour.` }));
    });
  });
  main.append(
    h(
      "section",
      { class: "narrow", "aria-labelledby": "forgot-title" },
      h("h1", { id: "forgot-title", text: "Forgot your password?" }),
      form,
      h("p", { class: "links" }, h("a", { href: "/login", text: "Back to sign in" })),
    ),
  );
}

function renderReset(main) {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (location.hash) history.replaceState(null, "", location.pathname); // keep it out of history
  const alert = alertBox();
  const section = h(
    "section",
    { class: "narrow", "aria-labelledby": "reset-title" },
    h("h1", { id: "reset-title", text: "Set a new password" }),
  );
  main.append(section);
  if (!token) {
    section.append(
      h("p", { class: "banner banner-error", role: "alert", text: "This reset link is incomplete. Ask for a new one." }),
      h("p", {}, h("a", { href: "/forgot-password", text: "Ask for a new reset link" })),
    );
    return;
  }
  const password = field("New password", {
    type: "password",
    name: "password",
    autocomplete: "new-password",
    minlength: 8,
    required: true,
  });
  const submit = h("button", { type: "submit", class: "primary", text: "Set new password" });
  const form = h("form", { class: "card form", novalidate: true }, alert.el, password.wrap, submit);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, alert, async () => {
      try {
        await api("auth/password/reset", { method: "POST", auth: false, body: { token, password: password.control.value } });
      } catch (error) {
        if (error.code === "invalid-token") {
          error.message = "This reset link is invalid, was already used or has expired. Ask for a new one.";
        }
        throw error;
      }
      replace(
        form,
        h("p", { role: "status", class: "banner banner-success", text: "Your password is changed. Every session was signed out." }),
        h("p", {}, h("a", { href: "/login", text: "Sign in with the new password" })),
      );
    });
  });
  section.append(form, h("p", { class: "links" }, h("a", { href: "/forgot-password", text: "Ask for a new reset link" })));
}
