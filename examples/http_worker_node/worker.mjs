// A Conveyor worker in Node (18 or newer, no dependencies) on the HTTP worker protocol (docs/http-worker.md):
// claim jobs under a lease, heartbeat with progress (and learn of cancel requests), then complete or fail each job.
//
//   CONVEYOR_API_URL=http://127.0.0.1:8000 node worker.mjs
//
// CONVEYOR_API_TOKEN is sent when set. SIGTERM or Ctrl-C: stop claiming, finish the jobs in hand, exit.
// WORD_DELAY_MS slows the work down (a pause at each progress step), to watch progress and try a cancel.

const API = (process.env.CONVEYOR_API_URL ?? "http://127.0.0.1:8000").replace(/\/$/, "") + "/api/v1";
const TOKEN = process.env.CONVEYOR_API_TOKEN;
const DELAY_MS = Number(process.env.WORD_DELAY_MS ?? 0);
const TYPES = ["word_count"];
const QUEUES = ["node"];
const LEASE_S = 30;

const headers = { "content-type": "application/json", ...(TOKEN ? { authorization: `Bearer ${TOKEN}` } : {}) };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let workerId;
let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => { stopping = true; });

async function post(path, body) {
  const response = await fetch(API + path, { method: "POST", headers, body: JSON.stringify(body) });
  const data = await response.json();
  if (!response.ok && response.status !== 409) {
    throw new Error(`${path}: ${response.status} ${data.error?.code}: ${data.error?.message}`);
  }
  return { status: response.status, data };  // 409: the lease was lost (the job went to another worker)
}

class Cancelled extends Error {}
class LeaseLost extends Error {}

// The work: count the words of `text`; the heartbeats carry progress and bring back cancel requests.
async function wordCount(job, beat) {
  const words = job.args.text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
  if (words.length === 0) throw Object.assign(new Error("the text has no words"), { retry: false });
  const counts = new Map();
  const step = Math.max(1, Math.ceil(words.length / 10));
  for (let i = 0; i < words.length; i++) {
    counts.set(words[i], (counts.get(words[i]) ?? 0) + 1);
    if ((i + 1) % step === 0) {
      await beat(Math.floor((100 * (i + 1)) / words.length), { words: i + 1 });
      await sleep(DELAY_MS);
    }
  }
  const top = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, job.args.top ?? 3);
  return { words: words.length, distinct: counts.size, top };
}

async function run(job) {
  const lease = { worker_id: workerId, attempt: job.attempt };
  const beat = async (progress, progress_info) => {
    const { status, data } = await post(`/jobs/${job.id}/heartbeat`, { ...lease, progress, progress_info });
    if (status === 409) throw new LeaseLost();
    if (data.cancel_requested) throw new Cancelled();
  };
  try {
    const result = await wordCount(job, beat);
    await post(`/jobs/${job.id}/complete`, { ...lease, result });
    console.log(`completed ${job.id}`);
  } catch (error) {
    if (error instanceof LeaseLost) return console.log(`lost ${job.id}: another worker has it`);
    const cancelled = error instanceof Cancelled;
    const retry = !cancelled && error.retry !== false;
    await post(`/jobs/${job.id}/fail`, { ...lease, error: cancelled ? "cancelled" : error.message, retry });
    console.log(`${cancelled ? "cancelled" : "failed"} ${job.id}: ${error.message}`);
  }
}

while (!stopping) {
  try {
    const { data } = await post("/workers/claim", {
      ...(workerId ? { worker_id: workerId } : {}), types: TYPES, queues: QUEUES, limit: 4, lease_s: LEASE_S,
    });
    if (!workerId) console.log(`worker ${data.worker_id} claiming ${TYPES} from ${API}`);
    workerId = data.worker_id;
    if (data.jobs.length === 0) await sleep(200);  // claims do not wait: poll again shortly
    else await Promise.all(data.jobs.map(run));  // the jobs of one claim run side by side
  } catch (error) {
    console.error(`claim failed: ${error.message}; retrying in 1 s`);
    await sleep(1000);
  }
}
console.log("stopped");
