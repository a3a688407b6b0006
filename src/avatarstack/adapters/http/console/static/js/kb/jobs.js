// Live progress of knowledge jobs (uploads and index builds): a labelled <progress> (role
// progressbar) per running job, fed by the realtime job.progress frames and, as a safety net
// for a frame missed while reconnecting, by polling GET /kb/jobs/{id}.

import { api } from "../api.js";
import { h, newId, replace } from "../dom.js";

const POLL_MS = 3000;

/**
 * Track one job in `container`; onDone(job) runs once when it succeeded or failed.
 * Returns a stop function.
 */
export function trackJob(realtime, container, jobId, label, onDone) {
  const id = newId("job");
  const bar = h("progress", { id, max: "100", value: "0", "data-job-id": jobId });
  const status = h("span", { class: "muted", text: "Queued" });
  const item = h("div", { class: "progress-item", "data-job-id": jobId }, h("label", { for: id, text: label }), bar, status);
  container.append(item);
  let finished = false;
  let timer = null;

  const update = (job) => {
    if (finished || !job) return;
    const percent = Math.round(Math.max(0, Math.min(1, Number(job.progress) || 0)) * 100);
    bar.value = percent;
    if (job.status === "succeeded" || job.status === "failed") {
      finished = true;
      stop();
      const ok = job.status === "succeeded";
      replace(
        item,
        h("p", {
          class: ok ? "banner banner-success" : "banner banner-error",
          role: ok ? "status" : "alert",
          text: ok ? `${label}: done.` : `${label}: failed. ${job.error || ""}`.trim(),
        }),
      );
      onDone?.(job);
    } else {
      status.textContent = job.status === "running" ? `${percent} %` : "Queued";
    }
  };
  const onFrame = (event) => {
    const frame = event.detail;
    if (frame.type === "job.progress" && frame.data?.job_id === jobId) update(frame.data);
  };
  const poll = async () => {
    try {
      update(await api(`kb/jobs/${encodeURIComponent(jobId)}`));
    } catch {
      // the next poll or frame will tell
    }
    if (!finished) timer = setTimeout(poll, POLL_MS);
  };
  function stop() {
    clearTimeout(timer);
    realtime?.removeEventListener("frame", onFrame);
  }
  realtime?.addEventListener("frame", onFrame);
  timer = setTimeout(poll, POLL_MS);
  return stop;
}
