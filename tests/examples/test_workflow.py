"""examples/workflow: a worker process runs a fan-out / fan-in workflow that the example's command line enqueues
and waits for; `conveyor workflows show` draws it."""

from __future__ import annotations

import sys

from tests.examples.conftest import Processes


def test_the_word_count_workflow_runs_to_its_summary(processes: Processes) -> None:
    processes.worker("workflow", "pipeline:app")
    out = processes.run("workflow", sys.executable, "pipeline.py", "run", "to be or not to be", "to be", "be")
    workflow_id, status, summary = out.strip().splitlines()
    assert status == "completed 5/5"
    assert summary == "9 words, 4 distinct; most common: be (4), to (3), not (1)"
    tree = processes.run("workflow", sys.executable, "-m", "conveyor", "workflows", "show", workflow_id)
    assert "word-count" in tree and "summary completed" in tree and "also after count-1, count-2" in tree
