// Admin: users and their roles, the audit log (newest first, paged by id), and the recent
// knowledge jobs (GET /kb/jobs: ingestions and index builds of every editor, newest first).

import { api, hasRole, user } from "../api.js";
import { alertBox, busy, emptyRow, h, replace, when } from "../dom.js";

const ROLES = ["member", "editor", "admin"];
const PAGE = 50;

export async function render(main) {
  main.append(h("h1", { text: "Admin" }));
  if (!hasRole("admin")) {
    main.append(h("p", { role: "alert", class: "banner banner-error", text: "Only administrators may see this page." }));
    return;
  }
  main.append(usersSection(), auditSection(), jobsSection());
}

function table(label, headings, body) {
  return h(
    "div",
    { class: "table-wrap" },
    h("table", { class: "stack", "aria-label": label }, h("thead", {}, h("tr", {}, headings.map((t) => h("th", { scope: "col", text: t })))), body),
  );
}

function usersSection() {
  const alert = alertBox();
  const body = h("tbody", {});
  const more = h("button", { type: "button", text: "More users", hidden: true });
  let offset = 0;
  const load = async () => {
    const listing = await api("admin/users", { query: { limit: PAGE, offset } });
    for (const u of listing.users) body.append(userRow(u, alert));
    offset += listing.users.length;
    more.hidden = offset >= listing.total;
  };
  more.addEventListener("click", () => busy(more, alert, load));
  busy(null, alert, load);
  return h("section", { "aria-labelledby": "users-title" }, h("h2", { id: "users-title", text: "Users" }), alert.el, table("Users", ["User", "Verified", "Roles", "Save"], body), more);
}

function userRow(u, alert) {
  const boxes = ROLES.map((role) => {
    const box = h("input", { type: "checkbox", value: role, checked: u.roles.includes(role), "aria-label": `${role} (${u.email})` });
    return h("label", { class: "role" }, box, ` ${role}`);
  });
  const save = h("button", { type: "button", class: "small", text: "Save roles", "aria-label": `Save roles of ${u.email}` });
  save.addEventListener("click", () =>
    busy(save, alert, async () => {
      const roles = boxes.map((label) => label.querySelector("input")).filter((box) => box.checked).map((box) => box.value);
      const updated = await api(`admin/users/${encodeURIComponent(u.id)}/roles`, { method: "PUT", body: { roles } });
      save.textContent = "Saved";
      setTimeout(() => (save.textContent = "Save roles"), 2000);
      for (const label of boxes) {
        const box = label.querySelector("input");
        box.checked = updated.roles.includes(box.value);
      }
    }),
  );
  const self = u.id === user()?.id ? " (you)" : "";
  return h(
    "tr",
    { "data-user-id": u.id },
    h("td", { "data-label": "User" }, h("strong", { text: `${u.email}${self}` }), u.display_name ? h("div", { class: "muted", text: u.display_name }) : null),
    h("td", { "data-label": "Verified", text: u.email_verified ? "yes" : "no" }),
    h("td", { "data-label": "Roles" }, h("fieldset", { class: "roles" }, h("legend", { class: "visually-hidden", text: `Roles of ${u.email}` }), boxes)),
    h("td", { "data-label": "Save" }, save),
  );
}

function auditSection() {
  const alert = alertBox();
  const body = h("tbody", {});
  const newer = h("button", { type: "button", text: "Newest" });
  const older = h("button", { type: "button", text: "Older" });
  let before = null;
  const load = async (beforeId) => {
    const listing = await api("admin/audit", { query: { limit: PAGE, before_id: beforeId } });
    const events = listing.events || [];
    replace(
      body,
      events.map((e) =>
        h(
          "tr",
          { "data-event-id": String(e.id) },
          h("td", { "data-label": "When", text: when(e.created_at) }),
          h("td", { "data-label": "Action", text: e.action }),
          h("td", { "data-label": "Actor", text: e.actor_id || "–" }),
          h("td", { "data-label": "Subject", text: e.subject_id || "–" }),
          h("td", { "data-label": "IP", text: e.ip || "–" }),
          h("td", { "data-label": "Details", text: Object.keys(e.data || {}).length ? JSON.stringify(e.data) : "" }),
        ),
      ),
    );
    before = events.length ? events[events.length - 1].id : null;
    older.disabled = events.length < PAGE;
    newer.disabled = !beforeId;
  };
  newer.addEventListener("click", () => busy(newer, alert, () => load(null)));
  older.addEventListener("click", () => busy(older, alert, () => load(before)));
  busy(null, alert, () => load(null));
  return h(
    "section",
    { "aria-labelledby": "audit-title" },
    h("h2", { id: "audit-title", text: "Audit log" }),
    alert.el,
    table("Audit log", ["When", "Action", "Actor", "Subject", "IP", "Details"], body),
    h("div", { class: "actions" }, newer, older),
  );
}

function jobsSection() {
  const alert = alertBox();
  const body = h("tbody", {});
  const load = async () => {
    const { jobs } = await api("kb/jobs", { query: { limit: 30 } });
    const rows = jobs || [];
    replace(
      body,
      rows.map((j) =>
        h(
          "tr",
          { "data-job-id": j.job_id },
          h("td", { "data-label": "Job", text: `${j.kind} ${j.job_id.slice(0, 8)}` }),
          h("td", { "data-label": "Status", text: j.error ? `${j.status}: ${j.error}` : j.status }),
          h("td", { "data-label": "Progress", text: `${Math.round((j.progress || 0) * 100)} %` }),
          h("td", { "data-label": "Attempts", text: j.attempts }),
          h("td", { "data-label": "Updated", text: when(j.updated_at) }),
        ),
      ),
    );
    if (!rows.length) body.append(emptyRow("No recent knowledge jobs.", 5));
  };
  busy(null, alert, load);
  return h(
    "section",
    { "aria-labelledby": "jobs-title" },
    h("h2", { id: "jobs-title", text: "Recent knowledge jobs" }),
    alert.el,
    table("Jobs", ["Job", "Status", "Progress", "Attempts", "Updated"], body),
  );
}
