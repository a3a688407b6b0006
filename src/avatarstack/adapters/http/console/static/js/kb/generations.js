// The index generations of the knowledge page: status, chunk count and the golden-set figures
// (hit rate, recall@k, MRR) of each; build a new one, activate one (an older one rolls back).

import { api } from "../api.js";
import { alertBox, busy, emptyRow, field, h, replace, when } from "../dom.js";

const AFTER_BUILD = [
  ["no", "Keep it inactive (activate it yourself)"],
  ["if_better", "Activate it if its figures are not worse"],
  ["yes", "Activate it"],
];

function figure(value) {
  return typeof value === "number" ? value.toFixed(2) : "–";
}

export function createGenerations({ onJob }) {
  const alert = alertBox();
  const after = field("After the build", { name: "activate" }, "select");
  for (const [value, text] of AFTER_BUILD) after.control.append(h("option", { value, text }));
  const build = h("button", { type: "button", class: "primary", text: "Build index" });
  const body = h("tbody", {});
  const table = h(
    "table",
    { class: "stack", "aria-label": "Index generations" },
    h(
      "thead",
      {},
      h("tr", {}, ["Generation", "Status", "Chunks", "Hit rate", "Recall@k", "MRR", "Built", "Actions"].map((t) => h("th", { scope: "col", text: t }))),
    ),
    body,
  );
  const el = h(
    "section",
    { "aria-labelledby": "generations-title" },
    h("h2", { id: "generations-title", text: "Index generations" }),
    alert.el,
    h("div", { class: "inline" }, after.wrap, build),
    h("div", { class: "table-wrap" }, table),
  );

  build.addEventListener("click", () =>
    busy(build, alert, async () => {
      const started = await api("kb/generations", { method: "POST", body: { activate: after.control.value } });
      onJob(started.job_id, `Building index ${started.generation_id.slice(0, 8)}`);
      await load();
    }),
  );

  async function load() {
    let listing;
    try {
      listing = await api("kb/generations");
    } catch (error) {
      alert.show(error);
      return;
    }
    const generations = listing.generations || [];
    replace(body, generations.length ? generations.map(row) : emptyRow("No index yet: build one once documents are ingested.", 8));
  }

  function row(g) {
    const golden = g.metrics?.golden || {};
    const activate =
      g.status === "ready" && !g.active
        ? h("button", { type: "button", class: "small", text: "Activate", "data-generation-id": g.generation_id })
        : null;
    activate?.addEventListener("click", () =>
      busy(activate, alert, async () => {
        await api(`kb/generations/${encodeURIComponent(g.generation_id)}/activate`, { method: "POST" });
        await load();
      }),
    );
    const status = g.active ? `${g.status}, active` : g.status;
    return h(
      "tr",
      { "data-generation-id": g.generation_id, "data-active": g.active ? "true" : "false" },
      h("td", { "data-label": "Generation" }, h("code", { text: g.generation_id.slice(0, 8) }), h("span", { class: "muted", text: ` ${g.embedder}` })),
      h("td", { "data-label": "Status", text: g.error ? `${status}: ${g.error}` : status }),
      h("td", { "data-label": "Chunks", text: g.chunk_count }),
      h("td", { "data-label": "Hit rate", text: figure(golden.hit_at_k) }),
      h("td", { "data-label": "Recall@k", text: figure(golden.recall_at_k) }),
      h("td", { "data-label": "MRR", text: figure(golden.mrr) }),
      h("td", { "data-label": "Built", text: when(g.created_at) }),
      h("td", { "data-label": "Actions" }, activate),
    );
  }

  return { el, load };
}
