// The documents table of the knowledge page: each document's current version and status, its
// version history with restore, a new version, delete.

import { api } from "../api.js";
import { alertBox, busy, emptyRow, h, replace, when } from "../dom.js";

/** What the upload picker offers when the server names no types (GET /console/config does). */
export const ACCEPT = ".pdf,application/pdf";

export function createDocuments({ onJob, onChange, onNewVersion }) {
  const alert = alertBox();
  const body = h("tbody", {});
  const table = h(
    "table",
    { class: "stack", "aria-label": "Documents" },
    h("thead", {}, h("tr", {}, ["Title", "Version", "Status", "Updated", "Actions"].map((t) => h("th", { scope: "col", text: t })))),
    body,
  );
  const el = h("section", { "aria-labelledby": "documents-title" }, h("h2", { id: "documents-title", text: "Documents" }), alert.el, h("div", { class: "table-wrap" }, table));

  async function load() {
    let listing;
    try {
      listing = await api("kb/documents", { query: { limit: 200 } });
    } catch (error) {
      alert.show(error);
      return [];
    }
    const documents = listing.documents || [];
    replace(body, documents.length ? documents.map(row) : emptyRow("No documents yet: upload one above.", 5));
    return documents;
  }

  function row(doc) {
    const history = h("div", { hidden: true });
    const toggle = h("button", { type: "button", class: "small", "aria-expanded": "false", text: "History" });
    toggle.addEventListener("click", async () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      history.hidden = !open;
      if (open) await showHistory(doc, history);
    });
    const upload = h("button", { type: "button", class: "small", text: "New version", "aria-label": `New version of ${doc.title}` });
    upload.addEventListener("click", () => onNewVersion(doc));
    const remove = h("button", { type: "button", class: "small danger", text: "Delete", "aria-label": `Delete ${doc.title}` });
    remove.addEventListener("click", () => {
      if (!window.confirm(`Delete "${doc.title}" and all its versions?`)) return;
      busy(remove, alert, async () => {
        await api(`kb/documents/${encodeURIComponent(doc.document_id)}`, { method: "DELETE" });
        await load();
        onChange?.();
      });
    });
    return h(
      "tr",
      { "data-document-id": doc.document_id },
      h("td", { "data-label": "Title" }, h("strong", { text: doc.title }), history),
      h("td", { "data-label": "Version", text: doc.current_version ? `v${doc.current_version}` : "–" }),
      h("td", { "data-label": "Status", text: statusOf(doc) }),
      h("td", { "data-label": "Updated", text: when(doc.updated_at) }),
      h("td", { "data-label": "Actions" }, h("div", { class: "actions" }, toggle, upload, remove)),
    );
  }

  async function showHistory(doc, container) {
    let listing;
    try {
      listing = await api(`kb/documents/${encodeURIComponent(doc.document_id)}/versions`);
    } catch (error) {
      replace(container, h("p", { role: "alert", text: error.message }));
      return;
    }
    const items = [...(listing.versions || [])].reverse().map((v) => {
      const isCurrent = v.version === listing.current_version;
      const parts = [`Version ${v.version}`, v.status, v.filename];
      if (v.pages) parts.push(`${v.pages} pages`);
      if (v.restored_from) parts.push(`restored from version ${v.restored_from}`);
      parts.push(when(v.created_at));
      const restore =
        !isCurrent && v.status === "ready"
          ? h("button", { type: "button", class: "small", text: "Restore", "aria-label": `Restore version ${v.version}` })
          : null;
      restore?.addEventListener("click", () =>
        busy(restore, alert, async () => {
          const restored = await api(`kb/documents/${encodeURIComponent(doc.document_id)}/versions/${v.version}/restore`, { method: "POST" });
          const jobId = restored?.latest?.job_id;
          if (jobId) onJob(jobId, `Restoring ${doc.title} version ${v.version}`);
          await load();
        }),
      );
      return h("li", { "data-version": String(v.version) }, parts.join(" · "), isCurrent ? h("strong", { text: " (current)" }) : null, " ", restore);
    });
    replace(container, h("ol", { class: "versions", "aria-label": `Versions of ${doc.title}` }, items));
  }

  return { el, load };
}

/** The list has no version details: a current version means ready; the upload's progress and
 * the history tell the rest. */
function statusOf(doc) {
  const latest = doc.latest || doc.current;
  if (latest?.status) return latest.error ? `${latest.status}: ${latest.error}` : latest.status;
  return doc.current_version ? "ready" : "processing";
}
