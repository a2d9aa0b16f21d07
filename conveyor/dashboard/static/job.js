// One job's page: status, progress, error and timeline follow the job live.
import { duration, jobDuration, liveJobs, setTime, throttle } from "./app.js";

const page = document.querySelector("[data-job-page]");
const jobId = page.dataset.jobId;
const $ = (selector) => page.querySelector(selector);
const STATUSES_DONE = ["completed", "failed", "cancelled"];

function pretty(value) {
  return value == null ? "—" : JSON.stringify(value, null, 2);
}

function render(job) {
  const status = job.status;
  page.dataset.status = status;
  const badge = $("[data-f=status]");
  badge.className = `badge s-${status}`;
  badge.textContent = status;
  $("[data-f=progress-wrap]").hidden = status !== "processing";
  const progress = $("[data-f=progress]");
  progress.value = job.progress;
  progress.textContent = `${job.progress}%`;
  $("[data-f=progress-text]").textContent = `${job.progress}%`;
  const info = job.progress_info ?? {};
  $("[data-t=progress-info]").textContent = Object.keys(info)
    .sort()
    .map((key) => `${key}: ${typeof info[key] === "object" ? JSON.stringify(info[key]) : info[key]}`)
    .join(" · ");
  $("[data-cancel-note]").hidden = !job.cancel_requested;
  $("[data-error-card]").hidden = !job.error;
  $("[data-t=error]").textContent = job.error ?? "";
  $("[data-traceback]").hidden = !job.error_detail;
  $("[data-t=error_detail]").textContent = job.error_detail ?? "";
  $("[data-t=attempts]").textContent = String(job.attempts);
  $("[data-t=max_attempts]").textContent = String(job.max_retries + 1);
  $("[data-t=worker_id]").textContent = job.worker_id ?? "—";
  $("[data-t=result]").textContent = pretty(job.result);
  $("[data-t=ran]").textContent = duration(jobDuration(job));
  for (const name of ["run_at", "started_at", "completed_at", "updated_at"]) {
    const cell = $(`[data-f=${name}]`);
    let time = cell.querySelector("time");
    if (!job[name]) {
      cell.textContent = "—";
      continue;
    }
    if (!time) {
      time = document.createElement("time");
      time.setAttribute("data-relative", "");
      cell.replaceChildren(time);
    }
    setTime(time, job[name]);
  }
  for (const form of page.querySelectorAll("form[data-action]")) {
    const action = form.dataset.action;
    form.hidden =
      action === "cancel"
        ? STATUSES_DONE.includes(status) || job.cancel_requested
        : action === "retry"
          ? !["failed", "cancelled"].includes(status)
          : status === "processing";
  }
}

function renderTimeline(events) {
  const items = events.map((event) => {
    const li = document.createElement("li");
    li.className = `s-${event.to_status}`;
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.setAttribute("aria-hidden", "true");
    const head = document.createElement("div");
    const title = document.createElement("strong");
    title.textContent = event.from_status ? `${event.from_status} → ${event.to_status}` : `created · ${event.to_status}`;
    head.append(title);
    if (event.message) {
      const note = document.createElement("span");
      note.className = "muted";
      note.textContent = ` — ${event.message}`;
      head.append(note);
    }
    const meta = document.createElement("div");
    meta.className = "muted small";
    const time = document.createElement("time");
    time.setAttribute("data-relative", "");
    setTime(time, event.at);
    meta.append(time);
    if (event.worker_id) {
      const code = document.createElement("code");
      code.textContent = event.worker_id;
      meta.append(" · ", code);
    }
    li.append(dot, head, meta);
    return li;
  });
  $("[data-timeline]").replaceChildren(...items);
}

const reload = throttle(async () => {
  const response = await fetch(`/ui/data/jobs/${encodeURIComponent(jobId)}`, { headers: { Accept: "application/json" } });
  if (response.status === 404) {
    window.location.assign("/ui/jobs");
    return;
  }
  if (!response.ok) return;
  const data = await response.json();
  render(data.job);
  renderTimeline(data.events);
}, 300);

document.addEventListener("conveyor:done", (event) => {
  const { ok, data } = event.detail;
  if (!ok) return;
  if (data.deleted) window.location.assign("/ui/jobs");
  else if (data.job) {
    render(data.job);
    reload();
  }
});

liveJobs(
  { job_id: jobId },
  {
    onJob(job) {
      const changed = job.status !== page.dataset.status;
      render(job);
      if (changed) reload();
    },
    onDeleted() {
      window.location.assign("/ui/jobs");
    },
  },
);
