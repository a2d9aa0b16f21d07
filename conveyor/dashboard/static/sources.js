// The sources page: switching namespace reloads it; deletions ask first; sources being processed are followed until
// they are ready or failed.
const select = document.querySelector("[data-autosubmit]");
select?.addEventListener("change", () => select.form.requestSubmit());
document.addEventListener("submit", (event) => {
  const question = event.target.dataset?.confirm;
  if (question && !event.target.hasAttribute("data-async") && !window.confirm(question)) event.preventDefault();
});

const section = document.querySelector("[data-sources]");
const BADGE = { ready: "completed", failed: "failed", processing: "processing" };
const POLL_MS = 2000;

function busy() {
  return [...document.querySelectorAll("[data-source-status]")].some((el) =>
    ["pending", "processing"].includes(el.textContent),
  );
}

async function follow() {
  if (!section || !busy()) return;
  const params = new URLSearchParams({ namespace: section.dataset.namespace });
  const response = await fetch(`/ui/data/sources?${params}`, { headers: { Accept: "application/json" } });
  if (response.ok) {
    const { sources } = await response.json();
    for (const source of sources) {
      const row = section.querySelector(`tr[data-source-id="${CSS.escape(source.id)}"]`);
      if (!row) continue;
      const badge = row.querySelector("[data-source-status]");
      badge.className = `badge s-${BADGE[source.status] ?? "pending"}`;
      badge.textContent = source.status;
      row.querySelector("[data-source-chunks]").textContent = String(source.chunk_count);
    }
  }
  setTimeout(follow, POLL_MS);
}

setTimeout(follow, POLL_MS);
