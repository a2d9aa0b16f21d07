// One workflow's page: its graph laid out by dagre (vendored: dagre.esm.js, MIT, see dagre.LICENSE.txt) and drawn
// as SVG, each step coloured by its state; followed live: the page's event stream (SSE) says when one of its steps
// changed, then the page reads the workflow again (and every few seconds while it runs, should the stream drop).
import { liveJobs, throttle } from "./app.js";
import dagre from "./dagre.esm.js";

const page = document.querySelector("[data-workflow-page]");
const box = page.querySelector("[data-graph]");
const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 5000;
const NODE_W = 150;
const NODE_H = 40;
const MAX_DRAWN = 500; // a bigger graph is listed in the table only: its layout would take seconds

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  parent?.appendChild(node);
  return node;
}

function layout(steps) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 48, marginx: 8, marginy: 8 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const step of steps) g.setNode(step.id, { width: NODE_W, height: NODE_H });
  for (const step of steps) for (const parent of step.depends_on) if (g.hasNode(parent)) g.setEdge(parent, step.id);
  dagre.layout(g);
  return g;
}

let drawn = null; // the step ids of the drawn graph: its layout is kept while only states change

function draw(workflow) {
  const steps = workflow.steps ?? [];
  if (steps.length > MAX_DRAWN) {
    box.textContent = `${steps.length} steps: too many to draw; see the table below.`;
    return;
  }
  const ids = steps.map((s) => s.id).join(",");
  if (drawn !== ids) {
    const g = layout(steps);
    const { width, height } = g.graph();
    box.replaceChildren();
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "wf-svg" }, box);
    const defs = el("defs", {}, svg);
    const marker = el("marker", { id: "wf-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7,
                                  markerHeight: 7, orient: "auto-start-reverse" }, defs);
    el("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "wf-arrow" }, marker);
    for (const e of g.edges()) {
      const points = g.edge(e).points.map((p) => `${p.x},${p.y}`).join(" ");
      el("polyline", { points, class: "wf-edge", "marker-end": "url(#wf-arrow)" }, svg);
    }
    for (const step of steps) {
      const n = g.node(step.id);
      const link = el("a", { href: `/ui/jobs/${encodeURIComponent(step.id)}`, "data-node": step.id }, svg);
      el("rect", { x: n.x - NODE_W / 2, y: n.y - NODE_H / 2, width: NODE_W, height: NODE_H, rx: 8 }, link);
      const label = el("text", { x: n.x, y: n.y - 3, "text-anchor": "middle", class: "wf-name" }, link);
      label.textContent = step.step.length > 20 ? `${step.step.slice(0, 19)}…` : step.step;
      el("text", { x: n.x, y: n.y + 12, "text-anchor": "middle", class: "wf-state", "data-state": "" }, link);
      el("title", {}, link).textContent = step.step;
    }
    drawn = ids;
  }
  for (const step of steps) {
    const link = box.querySelector(`[data-node="${CSS.escape(step.id)}"]`);
    if (!link) continue;
    link.setAttribute("class", `wf-node s-${step.status}`);
    link.querySelector("[data-state]").textContent = step.status;
    link.querySelector("title").textContent = `${step.step}: ${step.status}${step.error ? ` (${step.error})` : ""}`;
    const row = page.querySelector(`tr[data-step="${CSS.escape(step.step)}"] [data-step-status]`);
    if (row) {
      row.className = `badge s-${step.status}`;
      row.textContent = step.status;
    }
  }
  page.dataset.status = workflow.status;
  const badge = page.querySelector("h1 [data-f=status]");
  badge.className = `badge s-${workflow.status}`;
  badge.textContent = workflow.status;
  page.querySelector("[data-f=progress]").value = workflow.steps_done;
  page.querySelector("[data-t=progress]").textContent = `${workflow.steps_done}/${workflow.steps_total}`;
  page.querySelector("[data-action=cancel]").hidden = workflow.status !== "running";
  page.querySelector("[data-action=retry]").hidden = !["failed", "cancelled"].includes(workflow.status);
}

async function load() {
  const response = await fetch(`/ui/data/workflows/${encodeURIComponent(page.dataset.workflowId)}`, {
    headers: { Accept: "application/json" },
  });
  if (response.ok) draw(await response.json());
}

async function poll() {
  await load();
  if (page.dataset.status === "running") setTimeout(poll, POLL_MS);
}

const loadSoon = throttle(load, 250);
liveJobs({}, { onJob: (job) => job.workflow_id === page.dataset.workflowId && loadSoon() });
poll();
