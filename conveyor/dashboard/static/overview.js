// The overview: counts per queue, workers and the last hour's charts, refreshed from the server's stored history.
import { duration, liveJobs, throttle } from "./app.js";

const SVG = "http://www.w3.org/2000/svg";
let WIDTH = 600; // the chart's own pixel width, so text and strokes are never stretched
const HEIGHT = 160;
const PAD = { top: 8, right: 8, bottom: 20, left: 44 };
const REFRESH_MS = 10000;

function svgEl(name, attrs = {}) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  return el;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function minuteLabel(iso) {
  const date = new Date(iso);
  return `${String(date.getHours()).padStart(2, "0")}:${String(date.getMinutes()).padStart(2, "0")}`;
}

function frame(svg, max, points, format) {
  WIDTH = Math.max(240, Math.round(svg.getBoundingClientRect().width) || 600);
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  const inner = HEIGHT - PAD.top - PAD.bottom;
  const nodes = [];
  for (const fraction of [0, 0.5, 1]) {
    const y = PAD.top + inner * (1 - fraction);
    nodes.push(svgEl("line", { class: "grid", x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y }));
    const label = svgEl("text", { class: "axis", x: PAD.left - 6, y: y + 3.5, "text-anchor": "end" });
    label.textContent = format(max * fraction);
    nodes.push(label);
  }
  const step = Math.max(1, Math.floor(points.length / Math.max(2, Math.floor(WIDTH / 130))));
  const slot = (WIDTH - PAD.left - PAD.right) / Math.max(1, points.length);
  for (let i = 0; i < points.length; i += step) {
    const label = svgEl("text", { class: "axis", x: PAD.left + slot * i, y: HEIGHT - 4 });
    label.textContent = minuteLabel(points[i].minute);
    nodes.push(label);
  }
  return { nodes, inner, slot };
}

function drawThroughput(figure, points) {
  const svg = figure.querySelector("[data-svg]");
  const max = niceMax(Math.max(0, ...points.map((p) => p.completed + p.failed)));
  const { nodes, inner, slot } = frame(svg, max, points, (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)));
  points.forEach((p, i) => {
    const x = PAD.left + slot * i + slot * 0.15;
    const w = Math.max(1, slot * 0.7);
    const hc = (p.completed / max) * inner;
    const hf = (p.failed / max) * inner;
    const base = PAD.top + inner;
    if (p.completed) nodes.push(svgEl("rect", { class: "bar-completed", x, y: base - hc, width: w, height: hc, rx: 1 }));
    if (p.failed) nodes.push(svgEl("rect", { class: "bar-failed", x, y: base - hc - hf, width: w, height: hf, rx: 1 }));
  });
  svg.replaceChildren(...nodes);
  const completed = points.reduce((sum, p) => sum + p.completed, 0);
  const failed = points.reduce((sum, p) => sum + p.failed, 0);
  const summary = `${completed} completed, ${failed} failed in the last hour`;
  svg.setAttribute("aria-label", `Throughput: ${summary}`);
  figure.querySelector("[data-summary]").textContent = summary;
}

function axisDuration(seconds) {
  if (seconds === 0) return "0";
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  if (seconds < 120) return `${Number(seconds.toFixed(1))}s`;
  return `${Math.round(seconds / 60)}m`;
}

function drawDurations(figure, points) {
  const svg = figure.querySelector("[data-svg]");
  const values = points.flatMap((p) => [p.p50, p.p95]).filter((v) => v != null);
  const max = niceMax(Math.max(0, ...values));
  const { nodes, inner, slot } = frame(svg, max, points, axisDuration);
  for (const key of ["p95", "p50"]) {
    let path = "";
    let open = false;
    points.forEach((p, i) => {
      if (p[key] == null) {
        open = false;
        return;
      }
      const x = PAD.left + slot * (i + 0.5);
      const y = PAD.top + inner * (1 - p[key] / max);
      path += `${open ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)} `;
      open = true;
    });
    if (path) nodes.push(svgEl("path", { class: `line-${key}`, d: path.trim(), "vector-effect": "non-scaling-stroke" }));
    // Single minutes with data stay visible as dots.
    points.forEach((p, i) => {
      if (p[key] == null) return;
      const lonely = points[i - 1]?.[key] == null && points[i + 1]?.[key] == null;
      if (lonely) {
        const x = PAD.left + slot * (i + 0.5);
        const y = PAD.top + inner * (1 - p[key] / max);
        nodes.push(svgEl("circle", { class: `dot-${key}`, cx: x, cy: y, r: 2.5 }));
      }
    });
  }
  svg.replaceChildren(...nodes);
  const counted = points.filter((p) => p.count);
  const total = counted.reduce((sum, p) => sum + p.count, 0);
  const avg = total ? counted.reduce((sum, p) => sum + p.avg * p.count, 0) / total : null;
  const summary = total ? `average ${duration(avg)} over ${total} jobs` : "no completed job in the last hour";
  svg.setAttribute("aria-label", `Durations: ${summary}`);
  figure.querySelector("[data-summary]").textContent = summary;
}

function renderWorkers(workers) {
  const list = document.querySelector("[data-workers]");
  const template = document.querySelector("[data-worker-template]");
  list.replaceChildren(
    ...workers.map((worker) => {
      const item = template.content.firstElementChild.cloneNode(true);
      item.querySelector("[data-w=id]").textContent = worker.id;
      item.querySelector("[data-w=host]").textContent = `${worker.host} · pid ${worker.pid}`;
      item.querySelector("[data-w=queues]").textContent = worker.queues?.length ? worker.queues.join(", ") : "all queues";
      const meter = item.querySelector("[data-w=meter]");
      meter.max = worker.slots;
      meter.value = worker.running.length;
      item.querySelector("[data-w=load]").textContent = `${worker.running.length} / ${worker.slots} busy`;
      return item;
    }),
  );
  document.querySelector("[data-workers-empty]").hidden = workers.length > 0;
  document.querySelector("[data-worker-count]").textContent = String(workers.length);
}

function renderUnserved(unserved) {
  const box = document.querySelector("[data-unserved]");
  const list = box.querySelector("[data-unserved-list]");
  list.replaceChildren(
    ...unserved.map((u) => {
      const item = document.createElement("li");
      const code = document.createElement("code");
      code.textContent = u.type;
      const waiting = u.scheduled ? `${u.pending} pending, ${u.scheduled} scheduled` : `${u.pending} pending`;
      item.append("No worker for ", code, `: ${waiting}. Start one with `);
      const hint = document.createElement("code");
      hint.textContent = "conveyor worker --app";
      item.append(hint, " and the app that registers it.");
      return item;
    }),
  );
  box.hidden = unserved.length === 0;
}

function setPaused(row, paused) {
  row.dataset.paused = String(paused);
  row.querySelector("[data-paused-badge]").hidden = !paused;
  row.querySelector("[data-queue-pause]").hidden = paused;
  row.querySelector("[data-queue-resume]").hidden = !paused;
}

function renderQueues(queues) {
  const rows = new Map([...document.querySelectorAll("[data-queues] tr[data-queue]")].map((r) => [r.dataset.queue, r]));
  let unknown = false;
  for (const queue of queues) {
    const row = rows.get(queue.name);
    if (!row) {
      unknown = true;
      continue;
    }
    for (const cell of row.querySelectorAll("[data-qcount]")) {
      const value = queue.counts[cell.dataset.qcount] ?? 0;
      cell.textContent = String(value);
      cell.classList.toggle("zero", value === 0);
    }
    setPaused(row, queue.paused);
    const input = row.querySelector('input[name="concurrency"]');
    if (document.activeElement !== input) input.value = queue.concurrency ?? "";
  }
  return unknown;
}

function renderGroups(groups) {
  // The busiest keys of each keyed queue (fair limits); a queue that became keyed after the page loaded reloads it.
  const card = document.querySelector("[data-groups-card]");
  if (!card) return false;
  card.hidden = groups.length === 0;
  let unknown = false;
  for (const q of groups) {
    const box = document.querySelector(`[data-group-queue="${CSS.escape(q.queue)}"]`);
    if (!box) {
      unknown = true;
      continue;
    }
    box.querySelector("[data-group-total]").textContent = String(q.total);
    const body = box.querySelector("[data-group-rows]");
    body.replaceChildren(...q.keys.map((g) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = g.key;
      tr.append(th);
      for (const value of [g.running, g.ready, g.concurrency ?? "∞"]) {
        const td = document.createElement("td");
        td.className = "num";
        td.textContent = String(value);
        tr.append(td);
      }
      return tr;
    }));
  }
  return unknown;
}

function render(state) {
  for (const el of document.querySelectorAll("[data-count]")) el.textContent = String(state.counts[el.dataset.count] ?? 0);
  const unknown = renderQueues(state.queues) | renderGroups(state.groups ?? []);
  renderWorkers(state.workers);
  renderUnserved(state.unserved ?? []);
  drawThroughput(document.querySelector('[data-chart="throughput"]'), state.throughput);
  drawDurations(document.querySelector('[data-chart="duration"]'), state.duration_series);
  // A queue that did not exist when the page loaded: reload, unless the user is typing in a form.
  if (unknown && !document.activeElement?.closest("form")) window.location.reload();
}

async function refresh() {
  const response = await fetch("/ui/data/overview", { headers: { Accept: "application/json" } });
  if (response.ok) {
    latest = await response.json();
    render(latest);
  }
}

const soon = throttle(refresh, 1000);

document.addEventListener("conveyor:done", (event) => {
  const { ok, data } = event.detail;
  if (!ok || !data.queue) return;
  const row = document.querySelector(`[data-queues] tr[data-queue="${CSS.escape(data.queue.name)}"]`);
  if (row) setPaused(row, data.queue.paused);
  soon();
});

let latest = JSON.parse(document.getElementById("overview-state").textContent);
render(latest);
window.addEventListener("resize", throttle(() => render(latest), 200));
liveJobs({}, { onJob: soon, onDeleted: soon });
setInterval(refresh, REFRESH_MS);
