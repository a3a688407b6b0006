// The knowledge page. Editors and admins upload documents (with live progress), manage their
// versions and the index generations; every member can search the knowledge base, and sees
// nothing else here.

import { api, hasRole } from "../api.js";
import { alertBox, busy, field, h, replace } from "../dom.js";
import { ACCEPT, createDocuments } from "../kb/documents.js";
import { createGenerations } from "../kb/generations.js";
import { trackJob } from "../kb/jobs.js";

export async function render(main, ctx) {
  const editor = hasRole("editor", "admin");
  const titles = new Map();
  const stops = [];
  const progress = h("div", { class: "jobs" });
  const onJob = (jobId, label) => {
    stops.push(
      trackJob(ctx.realtime, progress, jobId, label, async () => {
        await Promise.all([documents?.load().then(remember), generations?.load()]);
      }),
    );
  };
  const remember = (docs) => {
    for (const doc of docs || []) titles.set(doc.document_id, doc.title);
  };
  let upload = null;
  const documents = editor
    ? createDocuments({ onJob, onChange: () => generations.load(), onNewVersion: (doc) => upload.target(doc) })
    : null;
  const generations = editor ? createGenerations({ onJob }) : null;

  main.append(
    h("h1", { text: "Knowledge" }),
    editor ? (upload = uploadSection(onJob, () => documents.load().then(remember), progress, ctx.config?.upload_types)).el : null,
    documents?.el,
    generations?.el,
    searchSection(titles),
  );
  if (editor) {
    remember(await documents.load());
    await generations.load();
  } else {
    api("kb/documents", { query: { limit: 200 } }).then((listing) => remember(listing.documents), () => {});
  }
  return () => stops.forEach((stop) => stop());
}

/** The upload form: a new document, or (after a document's "New version") a new version of it. */
function uploadSection(onJob, reload, progress, types) {
  const alert = alertBox();
  const file = field("Document (PDF)", { type: "file", name: "file", accept: types?.length ? types.join(",") : ACCEPT, required: true });
  const title = field("Title (optional)", { type: "text", name: "title", maxlength: 500 });
  const submit = h("button", { type: "submit", class: "primary", text: "Upload" });
  const cancel = h("button", { type: "button", text: "Cancel new version" });
  const mode = h("p", { class: "banner banner-warning", role: "status", hidden: true });
  const form = h("form", { class: "card form" }, alert.el, mode, h("div", { class: "inline" }, file.wrap, title.wrap), h("div", { class: "actions" }, submit, cancel));
  let versionOf = null;
  const target = (doc) => {
    versionOf = doc;
    mode.hidden = !doc;
    cancel.hidden = !doc;
    title.wrap.hidden = Boolean(doc);
    mode.textContent = doc ? `The next upload becomes a new version of "${doc.title}".` : "";
    if (doc) file.control.focus();
  };
  target(null);
  cancel.addEventListener("click", () => target(null));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = file.control.files?.[0];
    if (!chosen) {
      alert.show("Choose a file to upload.");
      return;
    }
    busy(submit, alert, async () => {
      const body = new FormData();
      body.append("file", chosen);
      const doc = versionOf;
      let result;
      if (doc) {
        result = await api(`kb/documents/${encodeURIComponent(doc.document_id)}`, { method: "PUT", form: body });
      } else {
        if (title.control.value.trim()) body.append("title", title.control.value.trim());
        result = await api("kb/documents", { method: "POST", form: body });
      }
      const what = doc ? `${chosen.name} (version ${result.version} of ${doc.title})` : chosen.name;
      if (result.job_id && result.created !== false) onJob(result.job_id, `Processing ${what}`);
      else alert.show(`${chosen.name} is the same as the current version: nothing changed.`);
      form.reset();
      target(null);
      await reload();
    });
  });
  const el = h("section", { "aria-labelledby": "upload-title" }, h("h2", { id: "upload-title", text: "Upload a document" }), form, progress);
  return { el, target };
}

function searchSection(titles) {
  const alert = alertBox();
  const query = field("Search the knowledge base", { type: "search", name: "query", maxlength: 2000, required: true });
  const submit = h("button", { type: "submit", class: "primary", text: "Search" });
  const results = h("ol", { class: "results" });
  const summary = h("p", { class: "muted", role: "status" });
  const form = h("form", { class: "inline", role: "search" }, query.wrap, submit);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = query.control.value.trim();
    if (!text) return;
    busy(submit, alert, async () => {
      const found = await api("kb/search", { method: "POST", body: { query: text } });
      if (found.results.some((r) => !titles.has(r.document_id))) {
        const listing = await api("kb/documents", { query: { limit: 200 } }).catch(() => ({ documents: [] }));
        for (const doc of listing.documents) titles.set(doc.document_id, doc.title);
      }
      summary.textContent = found.generation_id === null
        ? "No index is active yet: nothing to search."
        : `${found.results.length} result${found.results.length === 1 ? "" : "s"}.`;
      replace(results, found.results.map((r) => result(r, titles)));
    });
  });
  return h("section", { "aria-labelledby": "search-title" }, h("h2", { id: "search-title", text: "Search" }), alert.el, form, h("section", { "aria-label": "Search results" }, summary, results));
}

function result(r, titles) {
  const pages = r.page_end && r.page_end !== r.page ? `page ${r.page}–${r.page_end}` : `page ${r.page}`;
  const title = titles.get(r.document_id) || `Document ${r.document_id.slice(0, 8)}`;
  const text = r.text.length > 500 ? `${r.text.slice(0, 500)}…` : r.text;
  return h(
    "li",
    { "data-chunk-id": r.chunk_id },
    h("p", { text }),
    h("p", { class: "cite", text: `${title} · version ${r.version} · ${pages} · score ${r.score.toFixed(2)}` }),
  );
}
