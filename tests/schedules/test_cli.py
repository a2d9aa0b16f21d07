"""`conveyor schedules list|add|pause|resume|trigger|delete`, in this process with Typer's runner, on both
backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from conveyor import Conveyor
from conveyor.cli import add_plugin_commands, cli


@pytest.fixture
def runner() -> CliRunner:
    add_plugin_commands()  # as `main` does: the schedules plugin's commands
    return CliRunner()


@pytest.fixture
def app(db_url: str) -> Iterator[Conveyor]:
    conveyor = Conveyor(db_url)
    yield conveyor
    conveyor.close()


def invoke(runner: CliRunner, url: str, command: str, *args: str, code: int = 0) -> Result:
    argv = ["schedules", command, "--db", url, *args]
    result = runner.invoke(cli, argv)
    assert result.exit_code == code, f"{argv} -> {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def listed(runner: CliRunner, url: str) -> list[dict[str, Any]]:
    schedules: list[dict[str, Any]] = json.loads(invoke(runner, url, "list", "--json").stdout)["schedules"]
    return schedules


def test_add_list_pause_resume_trigger_delete(runner: CliRunner, db_url: str, app: Conveyor) -> None:
    added = invoke(runner, db_url, "add", "tidy", "demo.echo", "*/5 * * * *", "--args", '{"x": 1}',
                   "--timezone", "Europe/Berlin", "--queue", "cron", "--tag", "a", "--tag", "b")
    assert "added tidy" in added.stdout and "Every 5 minutes" in added.stdout
    (one,) = listed(runner, db_url)
    assert (one["name"], one["args"], one["queue"], one["tags"], one["timezone"]) == (
        "tidy", {"x": 1}, "cron", ["a", "b"], "Europe/Berlin"
    )
    table = invoke(runner, db_url, "list").stdout
    assert "tidy" in table and "Every 5 minutes" in table and "active" in table

    assert json.loads(invoke(runner, db_url, "pause", "tidy", "--json").stdout)["paused"] is True
    assert "paused" in invoke(runner, db_url, "list").stdout
    assert "next run" in invoke(runner, db_url, "resume", "tidy").stdout

    job_id = invoke(runner, db_url, "trigger", "tidy").stdout.strip()
    job = app.require_job(job_id)
    assert job.metadata["schedule"] == "tidy" and job.args == {"x": 1} and job.queue == "cron"
    assert listed(runner, db_url)[0]["last_job_id"] == job_id

    assert "deleted tidy" in invoke(runner, db_url, "delete", "tidy").stdout
    assert listed(runner, db_url) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad", "demo.echo", "61 * * * *"], "cron:"),
        (["bad", "demo.echo", "* * *"], "cron:"),
        (["bad", "demo.echo", "* * * * *", "--timezone", "Mars/Olympus"], "timezone:"),
        (["bad", "no.such.task", "* * * * *"], "task:"),
        (["bad", "demo.echo", "* * * * *", "--args", "{oops"], "--args is not JSON"),
    ],
)
def test_bad_input_is_one_line_and_stores_nothing(
    runner: CliRunner, db_url: str, app: Conveyor, args: list[str], message: str
) -> None:
    result = runner.invoke(cli, ["schedules", "add", "--db", db_url, *args])
    assert result.exit_code != 0 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert listed(runner, db_url) == []


def test_unknown_schedule_is_an_error(runner: CliRunner, db_url: str, app: Conveyor) -> None:
    for command in ("pause", "resume", "trigger", "delete"):
        result = runner.invoke(cli, ["schedules", command, "--db", db_url, "missing"])
        assert result.exit_code != 0 and "schedule 'missing' not found" in result.output
