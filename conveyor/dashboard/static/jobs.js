// The jobs table: rows update in place from the live stream, new jobs appear at the top of the first page.
import { duration, jobDuration, liveJobs, relative, setTime, shortId, throttle } from "./app.js";

const table = document.querySelector("[data-jobs-table]");
const tbody = table.querySelector("[data-rows]");
const template = document.querySelector("[data-row-template]");
const bulkForm = document.querySelector("[data-bulk]");
const empty = document.querySelector("[data-empty]");
const filters = {
  status: table.dataset.filterStatus,
  type: table.dataset.filterType,
  queue: table.dataset.filterQueue,
  tag: table.dataset.filterTag,
};
const firstPage = table.dataset.firstPage === "true";
const MAX_ROWS = 200;

const rowOf = (id) => tbody.querySelector(`tr[data-job-id="${CSS.escape(id)}"]`);
const field = (row, name) => row.querySelector(`[data-f="${name}"]`);
const text = (row, name) => row.querySelector(`[data-t="${name}"]`);

function matches(job) {
  return (
    (!filters.status || job.status === filters.status) &&
    (!filters.type || job.type === filters.type) &&
    (!filters.queue || job.queue === filters.queue) &&
    (!filters.tag || job.tags.includes(filters.tag))
  );
}

function updateRow(row, job) {
  const status = job.status;
  row.dataset.jobId = job.id;
  row.dataset.status = status;
  const select = field(row, "select");
  select.value = job.id;
  select.setAttribute("aria-label", `Select job ${job.id}`);
  field(row, "link").href = `/ui/jobs/${encodeURIComponent(job.id)}`;
  text(row, "type").textContent = job.type;
  const id = text(row, "id");
  id.textContent = shortId(job.id);
  id.title = job.id;
  const tags = field(row, "tags");
  tags.replaceChildren(
    ...job.tags.map((tag) => {
      const span = document.createElement("span");
      span.className = "tag";
      span.textContent = tag;
      return span;
    }),
  );
  const badge = field(row, "status");
  badge.className = `badge s-${status}`;
  badge.textContent = status;
  field(row, "progress-wrap").hidden = status !== "processing";
  const progress = field(row, "progress");
  progress.value = job.progress;
  progress.textContent = `${job.progress}%`;
  progress.setAttribute("aria-label", `Progress of job ${job.id}`);
  field(row, "progress-text").textContent = `${job.progress}%`;
  const error = text(row, "error");
  error.hidden = !job.error || status === "completed";
  error.textContent = job.error ?? "";
  error.title = job.error ?? "";
  text(row, "queue").textContent = job.queue;
  text(row, "attempts").textContent = `${job.attempts} / ${job.max_retries + 1}`;
  setTime(field(row, "created").querySelector("time"), job.created_at);
  text(row, "ran").textContent = status === "scheduled" ? `starts ${relative(job.run_at)}` : duration(jobDuration(job));
  for (const form of row.querySelectorAll("form[data-action]")) {
    const action = form.dataset.action;
    form.setAttribute("action", `/ui/jobs/${encodeURIComponent(job.id)}/${action}`);
    form.querySelector("button").setAttribute("aria-label", `${form.querySelector("button").textContent.trim()} job ${job.id}`);
    const terminal = ["completed", "failed", "cancelled"].includes(status);
    form.hidden =
      action === "cancel" ? terminal || job.cancel_requested : action === "retry" ? !["failed", "cancelled"].includes(status) : status === "processing";
  }
}

function addRow(job) {
  const row = template.content.firstElementChild.cloneNode(true);
  updateRow(row, job);
  row.classList.add("flash-new");
  tbody.prepend(row);
  setTimeout(() => row.classList.remove("flash-new"), 1200);
  while (tbody.rows.length > MAX_ROWS) tbody.lastElementChild.remove();
  empty.hidden = true;
}

function removeRow(id) {
  const row = rowOf(id);
  if (!row) return;
  // Keep keyboard users in place: focus moves to the next row (or the previous) when the focused row goes.
  if (row.contains(document.activeElement)) {
    const neighbour = row.nextElementSibling ?? row.previousElementSibling;
    (neighbour?.querySelector("a") ?? document.querySelector("main"))?.focus();
  }
  row.remove();
  empty.hidden = tbody.rows.length > 0;
  updateSelection();
}

// ------------------------------------------------------------------------------------------ selection
const selectAll = table.querySelector("[data-select-all]");
const boxes = () => [...tbody.querySelectorAll('input[type="checkbox"][name="ids"]')];

function updateSelection() {
  const chosen = boxes().filter((box) => box.checked);
  for (const box of boxes()) box.closest("tr").classList.toggle("is-selected", box.checked);
  const label = bulkForm.querySelector("[data-selected-count]");
  label.textContent = chosen.length ? `${chosen.length} selected` : "No job selected";
  for (const button of bulkForm.querySelectorAll("[data-needs-selection]")) button.disabled = chosen.length === 0;
  selectAll.checked = chosen.length > 0 && chosen.length === boxes().length;
  selectAll.indeterminate = chosen.length > 0 && chosen.length < boxes().length;
}

tbody.addEventListener("change", (event) => {
  if (event.target.matches('input[name="ids"]')) updateSelection();
});
selectAll.addEventListener("change", () => {
  for (const box of boxes()) box.checked = selectAll.checked;
  updateSelection();
});

// ------------------------------------------------------------------------------------------ results of actions
document.addEventListener("conveyor:done", (event) => {
  const { ok, data } = event.detail;
  if (!ok) return;
  if (data.deleted) removeRow(data.id);
  else if (data.job) {
    const row = rowOf(data.job.id);
    if (row) updateRow(row, data.job);
  }
  if (event.target === bulkForm) {
    for (const box of boxes()) box.checked = false;
    updateSelection();
  }
  refreshCounts();
});

// ------------------------------------------------------------------------------------------ live
const refreshCounts = throttle(async () => {
  const response = await fetch("/ui/data/overview", { headers: { Accept: "application/json" } });
  if (!response.ok) return;
  const state = await response.json();
  const scope = document.querySelector("[data-count-scope]")?.dataset.countScope;
  const counts =
    scope === "type"
      ? (state.counts_by_type[filters.type] ?? {})
      : scope === "queue"
        ? (state.queues.find((q) => q.name === filters.queue)?.counts ?? {})
        : state.counts;
  for (const el of document.querySelectorAll("[data-count]")) el.textContent = String(counts[el.dataset.count] ?? 0);
}, 1000);

// Unfiltered on the server: a deleted job's type, queue and tags are gone, so only an unfiltered stream hears of
// its deletion; `matches` filters here.
liveJobs(
  {},
  {
    onJob(job) {
      const row = rowOf(job.id);
      if (row) updateRow(row, job);
      else if (firstPage && matches(job)) addRow(job);
      refreshCounts();
    },
    onDeleted(id) {
      removeRow(id);
      refreshCounts();
    },
  },
);

updateSelection();
