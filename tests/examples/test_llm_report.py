"""examples/llm_report: a worker process runs the report task; the example's own command line starts, follows,
shows and cancels reports."""

from __future__ import annotations

import sys
from pathlib import Path

from conveyor import Conveyor
from tests.conftest import wait_for
from tests.examples.conftest import Processes


def report(processes: Processes, *args: str) -> str:
    return processes.run("llm_report", sys.executable, "report.py", *args)


def test_a_report_runs_to_the_end_with_progress(processes: Processes, tmp_path: Path) -> None:
    processes.worker("llm_report", "report:app")
    # 60 words at 0.02 s: 1.2 s a section, so the 0.2 s poll of `start` sees each section even on a loaded machine
    out = report(processes, "start", "Quarterly sales", "--sections", "3", "--words", "60", "--token-seconds", "0.02")
    lines = out.splitlines()
    job_id = lines[0]
    percents = [int(line.split()[1].rstrip("%")) for line in lines[1:-1]]
    assert lines[-2].split()[:2] == ["completed", "100%"]
    assert any(0 < p < 100 for p in percents), f"no progress in between: {out}"
    assert {"Summary", "Context", "Findings"} <= {line.split()[-1] for line in lines[1:-2] if len(line.split()) > 2}
    text = (tmp_path / "data" / "reports" / f"{job_id}.md").read_text()
    assert text.startswith("# Quarterly sales\n") and text.count("\n## ") == 3
    assert len(text.split()) == 3 + 3 * 2 + 3 * 60  # the title, three headings, three sections of 60 words
    assert report(processes, "show", job_id).startswith("completed 100%")


def test_cancel_stops_a_report_mid_way_and_leaves_no_file(processes: Processes, tmp_path: Path) -> None:
    processes.worker("llm_report", "report:app")
    job_id = report(processes, "start", "Churn", "--sections", "5", "--token-seconds", "0.05", "--no-wait").strip()
    app = Conveyor(processes.env["CONVEYOR_DATABASE_URL"], demo_tasks=False)
    try:
        wait_for(lambda: app.require_job(job_id).progress > 0, 60, what="the report under way")
        assert report(processes, "cancel", job_id).strip() in ("processing", "cancelled")
        wait_for(lambda: app.require_job(job_id).status.value == "cancelled", 30, what="the report cancelled")
        assert app.require_job(job_id).progress < 100
    finally:
        app.close()
    assert list((tmp_path / "data" / "reports").iterdir()) == []  # the draft was removed, no report written
    assert report(processes, "show", job_id).startswith("cancelled")
