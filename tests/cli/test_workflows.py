"""`conveyor workflows list|show|cancel|retry` and `conveyor enqueue --depends-on`, on both backends."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from conveyor import Conveyor, JobStatus
from conveyor.cli import cli


def invoke(url: str, *args: str, code: int = 0) -> str:
    group = 2 if args[0] == "workflows" else 1
    argv = [*args[:group], "--db", url, *args[group:]]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == code, f"{argv} -> {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result.stdout


def as_json(text: str) -> Any:
    return json.loads(text)


def test_enqueue_depends_on(app: Conveyor, db_url: str) -> None:
    parent = app.enqueue("demo.echo", {"n": 1})
    other = app.enqueue("demo.echo", {"n": 2})
    child = as_json(invoke(db_url, "enqueue", "demo.echo", "--depends-on", parent.id, "--depends-on", other.id,
                           "--json"))
    assert child["status"] == "waiting" and sorted(child["depends_on"]) == sorted([parent.id, other.id])
    failed = CliRunner().invoke(cli, ["enqueue", "--db", db_url, "demo.echo", "--depends-on",
                                      "01900000-0000-7000-8000-000000000000"])
    assert failed.exit_code != 0 and "depends_on" in failed.output
    assert len(app.list_jobs().jobs) == 3


def test_list_show_cancel_retry(app: Conveyor, db_url: str) -> None:
    wf = app.workflow("pipeline")
    a = wf.step("extract", "demo.echo", n=1, options={"delay": 3600})
    b = wf.step("transform", "demo.echo", after=[a], n=2)
    c = wf.step("other", "demo.echo", n=3, options={"delay": 3600})
    wf.step("load", "demo.echo", after=[b, c], n=4)
    run = wf.enqueue()

    listed = as_json(invoke(db_url, "workflows", "list", "--json"))["workflows"]
    assert [(w["id"], w["status"], w["steps_total"]) for w in listed] == [(run.id, "running", 4)]
    table = invoke(db_url, "workflows", "list", "--status", "running")
    assert "pipeline" in table and "0/4" in table
    assert "no workflows" in invoke(db_url, "workflows", "list", "--name", "else")

    tree = invoke(db_url, "workflows", "show", run.id)
    lines = tree.splitlines()
    assert "pipeline" in lines[0] and "running" in lines[0]
    assert any("extract" in line and "scheduled" in line for line in lines)
    load = next(line for line in lines if "load" in line)
    assert "waiting" in load and "also after other" in load
    # the tree nests transform under extract, and load under transform
    depth = {name: next(len(line) - len(line.lstrip(" │├└─")) for line in lines if f"{name} " in line)
             for name in ("extract", "transform", "load")}
    assert depth["extract"] < depth["transform"] < depth["load"]
    shown = as_json(invoke(db_url, "workflows", "show", run.id, "--json"))
    assert {s["step"] for s in shown["steps"]} == {"extract", "transform", "other", "load"}

    cancelled = as_json(invoke(db_url, "workflows", "cancel", run.id, "--json"))
    assert cancelled["status"] == "cancelled"
    assert "running" in invoke(db_url, "workflows", "retry", run.id)
    assert app.require_workflow(run.id).step("extract").status is JobStatus.PENDING
    unknown = CliRunner().invoke(cli, ["workflows", "show", "--db", db_url, "01900000-0000-7000-8000-000000000000"])
    assert unknown.exit_code == 2 and "not found" in unknown.output
