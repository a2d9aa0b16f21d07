// Shared behaviour of every dashboard page: forms that post without a reload, toasts, relative times and the
// live event stream. Job data is untrusted: it only ever reaches the page through textContent and attributes.

export const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export function toast(message, kind = "info") {
  const box = document.querySelector("[data-toasts]");
  if (!box) return;
  const item = document.createElement("div");
  item.className = `toast ${kind === "error" ? "error" : ""}`;
  item.textContent = message;
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 7000 : 4000);
}

const UNITS = [
  [60, 1, "s"],
  [3600, 60, "min"],
  [86400, 3600, "h"],
  [Infinity, 86400, "d"],
];

export function relative(iso, now = Date.now()) {
  if (!iso) return "—";
  let seconds = (now - Date.parse(iso)) / 1000;
  const future = seconds < 0;
  seconds = Math.abs(seconds);
  if (seconds < 5) return "just now";
  for (const [limit, size, unit] of UNITS) {
    if (seconds < limit) {
      const amount = `${Math.floor(seconds / size)} ${unit}`;
      return future ? `in ${amount}` : `${amount} ago`;
    }
  }
  return "";
}

export function duration(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function jobDuration(job) {
  if (!job.started_at) return null;
  const end = job.completed_at ? Date.parse(job.completed_at) : Date.now();
  return (end - Date.parse(job.started_at)) / 1000;
}

export function shortId(id) {
  return id.length > 12 ? `…${id.slice(-8)}` : id;
}

export function setTime(el, iso) {
  if (!el) return;
  el.setAttribute("datetime", iso ?? "");
  el.title = iso ? new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "";
  el.textContent = relative(iso);
}

function refreshTimes() {
  for (const el of document.querySelectorAll("time[data-relative]")) {
    const iso = el.getAttribute("datetime");
    if (iso) el.textContent = relative(iso);
  }
}

// ------------------------------------------------------------------------------------------ forms
async function submitAsync(form, submitter) {
  const body = new URLSearchParams(new FormData(form));
  if (submitter?.name) body.set(submitter.name, submitter.value);
  const button = submitter ?? form.querySelector("button[type=submit]");
  button?.setAttribute("aria-busy", "true");
  try {
    // getAttribute: a control named "action" would shadow the form's `action` property.
    const response = await fetch(form.getAttribute("action"), {
      method: "POST",
      body,
      headers: { Accept: "application/json", "X-CSRF-Token": csrfToken() },
      credentials: "same-origin",
    });
    if (response.status === 401) {
      window.location.assign(`/ui/login?next=${encodeURIComponent(location.pathname + location.search)}`);
      return;
    }
    let data = {};
    try {
      data = await response.json();
    } catch {
      data = { ok: false, message: `The server answered ${response.status}.` };
    }
    const ok = response.ok && data.ok !== false;
    const message = data.message ?? data.error?.message ?? (ok ? "Done." : "That did not work.");
    toast(message, ok ? "info" : "error");
    form.dispatchEvent(new CustomEvent("conveyor:done", { bubbles: true, detail: { ok, data, submitter } }));
  } catch (error) {
    toast(`Could not reach the server: ${error.message}`, "error");
  } finally {
    button?.removeAttribute("aria-busy");
  }
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-async")) return;
  const submitter = event.submitter;
  const question = submitter?.dataset.confirm ?? form.dataset.confirm;
  event.preventDefault();
  if (question && !window.confirm(question)) return;
  submitAsync(form, submitter);
});

// ------------------------------------------------------------------------------------------ live events
const indicator = () => document.querySelector("[data-live-indicator]");

function showLive(state) {
  const el = indicator();
  if (!el) return;
  el.hidden = false;
  el.classList.toggle("offline", state !== "live");
  el.querySelector("[data-live-text]").textContent = state === "live" ? "Live" : "Reconnecting…";
}

/** Subscribe to job changes; `filters` narrows by job_id, type, queue or tag. */
export function liveJobs(filters, { onJob, onDeleted }) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) if (value) params.set(key, value);
  const source = new EventSource(`/ui/events?${params}`);
  source.addEventListener("open", () => showLive("live"));
  source.addEventListener("error", () => showLive("offline"));
  source.addEventListener("job", (event) => onJob?.(JSON.parse(event.data)));
  source.addEventListener("deleted", (event) => onDeleted?.(JSON.parse(event.data).id));
  window.addEventListener("pagehide", () => source.close());
  return source;
}

/** Call `fn` at most once per `wait` ms, trailing. */
export function throttle(fn, wait) {
  let timer = null;
  return (...args) => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      fn(...args);
    }, wait);
  };
}

setInterval(refreshTimes, 15000);
