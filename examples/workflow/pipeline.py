"""A fan-out / fan-in workflow: count the words of several documents in parallel (one step each), total them in one
step that reads its parents' results, then write a summary after that. Runs offline on the SQLite default.

    cd examples/workflow
    conveyor worker --app pipeline:app                  # the worker, in one shell
    python pipeline.py run "to be or not" "to be" "be"  # enqueue the workflow, wait for it, print the total
    conveyor workflows show <workflow id>               # its graph in the terminal, each step with its state
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from conveyor import Conveyor, JobContext

app = Conveyor(demo_tasks=False)


@app.task(max_retries=2)
def count_words(ctx: JobContext, text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    return counts


@app.task
def total(ctx: JobContext) -> dict[str, int]:
    """The fan-in: `ctx.parent_results` holds each parent step's result, by step name."""
    merged: dict[str, int] = {}
    for counts in ctx.parent_results.values():
        for word, n in counts.items():
            merged[word] = merged.get(word, 0) + n
    return dict(sorted(merged.items(), key=lambda item: (-item[1], item[0])))


@app.task
def summarize(ctx: JobContext, top: int = 3) -> str:
    counts: dict[str, int] = ctx.parent_results["total"]
    best = ", ".join(f"{word} ({n})" for word, n in list(counts.items())[:top])
    return f"{sum(counts.values())} words, {len(counts)} distinct; most common: {best}"


def enqueue(texts: list[str]) -> str:
    wf = app.workflow("word-count", metadata={"documents": len(texts)})
    parts = [wf.step(f"count-{i}", count_words, text=text) for i, text in enumerate(texts)]     # fan-out
    merged = wf.step("total", total, after=parts)                                              # fan-in
    wf.step("summary", summarize, after=[merged], top=3, options={"priority": 5})
    return wf.enqueue().id


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="A fan-out / fan-in workflow.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="enqueue the workflow, wait for it, print the summary")
    run.add_argument("texts", nargs="+")
    run.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    workflow_id = enqueue(args.texts)
    print(workflow_id)
    done = app.wait_workflow(workflow_id, timeout=args.timeout, poll_interval=0.1)
    print(done.status, f"{done.steps_done}/{done.steps_total}")
    result: Any = done.step("summary").result
    print(result)
    return 0 if done.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
