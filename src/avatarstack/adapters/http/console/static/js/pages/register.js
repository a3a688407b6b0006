// Create an account. The server answers 202 whether or not the address is registered; the
// page then says to look for the verification e-mail (and, from a development server, links
// the verification directly).

import { api } from "../api.js";
import { alertBox, busy, field, h, replace } from "../dom.js";

/** A development server also returns the verification link (it never does in production):
 * offer it, so a person trying avatarstack locally needs no mail server. Only the link's path
 * to the verification route is used, on this site. */
function devLink(url) {
  if (typeof url !== "string") return [];
  let link;
  try {
    link = new URL(url, location.origin);
  } catch {
    return [];
  }
  if (!link.pathname.endsWith("/api/v1/auth/verify")) return [];
  return [
    h(
      "p",
      { class: "hint" },
      "Development server: you can also ",
      h("a", { href: link.pathname + link.search, text: "verify your address now" }),
      ".",
    ),
  ];
}

export async function render(main) {
  const alert = alertBox();
  const email = field("Email", { type: "email", name: "email", autocomplete: "email", required: true });
  const name = field("Display name", { type: "text", name: "display_name", autocomplete: "name", maxlength: 1000 });
  const password = field("Password", {
    type: "password",
    name: "password",
    autocomplete: "new-password",
    minlength: 8,
    required: true,
    "aria-describedby": "password-hint",
  });
  password.wrap.append(h("p", { id: "password-hint", class: "hint", text: "At least 8 characters." }));
  const submit = h("button", { type: "submit", class: "primary", text: "Create account" });
  const form = h("form", { class: "card form", novalidate: true }, alert.el, email.wrap, name.wrap, password.wrap, submit);
  const section = h(
    "section",
    { class: "narrow", "aria-labelledby": "register-title" },
    h("h1", { id: "register-title", text: "Create an account" }),
    form,
    h("p", { class: "links" }, "Already registered? ", h("a", { href: "/login", text: "Sign in" })),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, alert, async () => {
      const body = { email: email.control.value.trim(), password: password.control.value };
      if (name.control.value.trim()) body.display_name = name.control.value.trim();
      const answer = await api("auth/register", { method: "POST", auth: false, body });
      replace(
        form,
        h("p", { role: "status", class: "banner banner-success", text: `Check your inbox: we sent a verification link to ${body.email}.` }),
        h("p", {}, "Once verified, ", h("a", { href: "/login", text: "sign in" }), "."),
        ...devLink(answer?.verification_url),
      );
    });
  });
  main.append(section);
}
