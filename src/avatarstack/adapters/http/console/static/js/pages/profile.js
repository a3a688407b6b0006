// Profile: display name, the signed-in devices (sessions) with the current one marked, ending
// one of them or all the others. Signing out of this device is the header's "Sign out".

import { api, logout, setUser, user } from "../api.js";
import { alertBox, busy, field, h, replace, when } from "../dom.js";

export async function render(main, ctx) {
  const me = user();
  const alert = alertBox();
  const name = field("Display name", { type: "text", name: "display_name", maxlength: 1000, autocomplete: "name", value: me.display_name || "" });
  const save = h("button", { type: "submit", class: "primary", text: "Save" });
  const form = h("form", { class: "card form" }, alert.el, h("p", {}, "E-mail: ", h("strong", { text: me.email })), h("p", { text: `Roles: ${me.roles.join(", ")}` }), name.wrap, h("div", {}, save));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(save, alert, async () => {
      setUser(await api("users/me", { method: "PATCH", body: { display_name: name.control.value.trim() || null } }));
      ctx.notice("Your profile is saved.");
    });
  });

  const sessionsAlert = alertBox();
  const list = h("ul", { class: "results", "aria-label": "Sessions" });
  const revokeOthers = h("button", { type: "button", text: "Revoke all other sessions" });
  const signOutAll = h("button", { type: "button", class: "danger", text: "End every session (all devices)" });
  revokeOthers.addEventListener("click", () =>
    busy(revokeOthers, sessionsAlert, async () => {
      await api("users/me/sessions", { method: "DELETE" });
      ctx.notice("Every other session is signed out.");
      await load();
    }),
  );
  signOutAll.addEventListener("click", () =>
    busy(signOutAll, sessionsAlert, async () => {
      await api("users/me/sessions", { method: "DELETE" });
      await logout();
      ctx.navigate("/login", { replace: true });
    }),
  );

  async function load() {
    let listing;
    try {
      listing = await api("users/me/sessions");
    } catch (error) {
      sessionsAlert.show(error);
      return;
    }
    replace(list, (listing.sessions || []).map(session));
  }

  function session(s) {
    const device = s.user_agent || "Unknown device";
    const revoke = s.current ? null : h("button", { type: "button", class: "small", text: "Revoke", "aria-label": `Revoke the session of ${device}` });
    revoke?.addEventListener("click", () =>
      busy(revoke, sessionsAlert, async () => {
        await api(`users/me/sessions/${encodeURIComponent(s.id)}`, { method: "DELETE" });
        await load();
      }),
    );
    return h(
      "li",
      { "data-session-id": s.id, "data-current": s.current ? "true" : "false" },
      h("p", {}, h("strong", { text: device }), s.current ? h("span", { class: "badge", text: " (this device)" }) : null),
      h("p", { class: "cite", text: `Signed in ${when(s.created_at)} · last active ${when(s.last_used_at)}${s.ip ? ` · ${s.ip}` : ""}` }),
      revoke,
    );
  }

  main.append(
    h("h1", { text: "Profile" }),
    form,
    h(
      "section",
      { "aria-labelledby": "sessions-title" },
      h("h2", { id: "sessions-title", text: "Signed-in devices" }),
      sessionsAlert.el,
      list,
      h("div", { class: "actions" }, revokeOthers, signOutAll),
    ),
  );
  await load();
}
