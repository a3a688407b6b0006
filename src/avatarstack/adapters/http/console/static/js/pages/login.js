// Sign in: e-mail + password, a button per enabled OAuth provider, and the landing of the
// verification link (/?verified=1 or /?verify_error=<code>, redirected here).

import { api, login } from "../api.js";
import { alertBox, busy, field, h } from "../dom.js";
import { verifyText } from "../app.js";

export async function render(main, ctx) {
  const params = new URLSearchParams(location.search);
  const alert = alertBox();
  const email = field("Email", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = field("Password", {
    type: "password",
    name: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = h("button", { type: "submit", class: "primary", text: "Sign in" });
  const resend = h("button", { type: "button", hidden: true, text: "Send the verification e-mail again" });
  const providers = h("div", { class: "providers" });

  const form = h("form", { class: "card form", novalidate: true }, alert.el, email.wrap, password.wrap, submit, resend);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    resend.hidden = true;
    busy(submit, alert, async () => {
      try {
        await login(email.control.value.trim(), password.control.value);
      } catch (error) {
        if (error.code === "email-not-verified") resend.hidden = false;
        throw error;
      }
      const target = ctx.after || "/chat";
      ctx.after = null;
      ctx.navigate(target, { replace: true });
    });
  });
  resend.addEventListener("click", () =>
    busy(resend, alert, async () => {
      await api("auth/verify/resend", { method: "POST", auth: false, body: { email: email.control.value.trim() } });
      ctx.notice("If the address belongs to an unverified account, a new link is on its way.");
      resend.hidden = true;
    }),
  );

  main.append(
    h(
      "section",
      { class: "narrow", "aria-labelledby": "login-title" },
      h("h1", { id: "login-title", text: "Sign in" }),
      verificationBanner(params),
      form,
      providers,
      h(
        "p",
        { class: "links" },
        h("a", { href: "/register", text: "Create an account" }),
        " · ",
        h("a", { href: "/forgot-password", text: "Forgot your password?" }),
      ),
    ),
  );
  loadProviders(providers, ctx);
}

function verificationBanner(params) {
  if (params.has("verified")) {
    return h("p", { class: "banner banner-success", role: "status", text: "Your e-mail address is verified. You can sign in now." });
  }
  if (params.has("verify_error")) {
    return h("p", { class: "banner banner-error", role: "alert", text: verifyText(params) });
  }
  return null;
}

async function loadProviders(container, ctx) {
  let listing;
  try {
    listing = await api("auth/providers", { auth: false });
  } catch {
    return; // password sign-in still works
  }
  const oauth = listing?.oauth || [];
  if (!oauth.length) return;
  container.append(h("p", { class: "or", text: "or" }));
  for (const provider of oauth) {
    const button = h("button", {
      type: "button",
      class: "provider",
      "data-provider": provider.name,
      text: `Continue with ${provider.display_name}`,
    });
    button.addEventListener("click", () => {
      const url = new URL(provider.authorize_url, location.href);
      url.searchParams.set("redirect_to", ctx.after || "/chat");
      location.assign(url.toString());
    });
    container.append(button);
  }
}
