"""The `conveyor` command line: in this process with Typer's runner, and as a real subprocess where it matters
(workers, exit codes, the one-line errors people see)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from conveyor import Conveyor, JobStatus
from conveyor.cli import cli
from conveyor.testing import drain

ROOT = Path(__file__).resolve().parents[1]
CONVEYOR = str(Path(sys.executable).parent / "conveyor")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def app(sqlite_url: str) -> Iterator[Conveyor]:
    conveyor = Conveyor(sqlite_url)
    yield conveyor
    conveyor.close()


def invoke(runner: CliRunner, url: str, *args: str, code: int = 0) -> Result:
    """Run a command with `--db` placed after it, as the SPEC says; check the exit code."""
    argv = [*args[:2], "--db", url, *args[2:]] if args[0] in {"jobs", "queues"} else [args[0], "--db", url, *args[1:]]
    result = runner.invoke(cli, argv)
    assert result.exit_code == code, f"{argv} -> {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def run(*args: str, url: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    if url is not None:
        env["CONVEYOR_DATABASE_URL"] = url
    env.update(CONVEYOR_LEASE_S="2", CONVEYOR_SHUTDOWN_GRACE_S="2", CONVEYOR_POLL_INTERVAL_S="0.1")
    return subprocess.run(
        [CONVEYOR, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


# ---------------------------------------------------------------------------------------------- enqueue
def test_enqueue_prints_the_id(runner: CliRunner, sqlite_url: str, app: Conveyor) -> None:
    result = invoke(runner, sqlite_url, "enqueue", "demo.echo", "--args", '{"a": 1}', "--priority", "5",
                    "--queue", "q", "--max-retries", "2", "--tag", "x", "--tag", "y:1", "--timeout", "9")
    job_id = result.stdout.strip()
    job = app.require_job(job_id)
    assert (job.type, job.args, job.priority, job.queue, job.max_retries, job.tags, job.timeout) == (
        "demo.echo", {"a": 1}, 5, "q", 2, ["x", "y:1"], 9
    )


def test_enqueue_json_delay_and_unique_key(runner: CliRunner, sqlite_url: str, app: Conveyor) -> None:
    first = as_json(invoke(runner, sqlite_url, "enqueue", "demo.echo", "--delay", "15m", "--unique-key", "u",
                           "--json"))
    assert first["status"] == "scheduled" and first["unique_key"] == "u"
    assert first["tags"] == [] and first["metadata"] == {} and first["progress"] == 0
    job = app.require_job(first["id"])
    assert 899 <= (job.run_at - job.created_at).total_seconds() <= 901
    again = as_json(invoke(runner, sqlite_url, "enqueue", "demo.echo", "--unique-key", "u", "--json"))
    assert again["id"] == first["id"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["enqueue", "no.such.task"], "unknown task type 'no.such.task'"),
        (["enqueue", "demo.echo", "--args", "{not json"], "--args is not valid JSON"),
        (["enqueue", "demo.echo", "--args", "[1, 2]"], "--args must be a JSON object"),
        (["enqueue", "demo.sleep", "--args", '{"seconds": "long"}'], "invalid arguments"),
        (["enqueue", "demo.echo", "--delay", "-5"], "invalid duration '-5': it must not be negative"),
        (["enqueue", "demo.echo", "--delay", "soon"], "invalid duration"),
        (["enqueue", "demo.echo", "--priority", str(2**64)], "priority: Input should be less than or equal to"),
        (["jobs", "show", "nope"], "job nope not found"),
        (["jobs", "list", "--status", "bogus"], "unknown status"),
        (["jobs", "purge", "--status", "pending"], "purge deletes finished jobs only"),
        (["jobs", "purge", "--status", "bogus"], "unknown status"),
        (["jobs", "list", "--cursor", "nonsense"], "invalid cursor"),
        (["queues", "set", "q", "--concurrency", "0"], "concurrency must be an integer from 1 to 1000000, got 0"),
        (["queues", "set", "q", "--concurrency", "many"], "--concurrency must be a number"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(
    runner: CliRunner, sqlite_url: str, app: Conveyor, args: list[str], message: str
) -> None:
    result = invoke(runner, sqlite_url, *args, code=2)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert app.list_jobs().jobs == []  # nothing else harmed


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/x", "unsupported database URL"),
        ("sqlite:////no/such/directory/x.db", "does not exist"),
        ("sqlite://", "names no file"),
    ],
)
def test_a_bad_database_url_is_a_clear_error(runner: CliRunner, url: str, message: str) -> None:
    result = run("enqueue", "demo.echo", "--db", url)  # as people see it: a real process
    assert result.returncode == 2, result
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and message in result.stderr
    for args in (["jobs", "list"], ["queues", "list"], ["stats"], ["check"]):
        in_process = invoke(runner, url, *args, code=2)
        assert in_process.stderr.count("\n") == 1 and message in in_process.stderr


def test_the_subprocess_reports_errors_in_one_line(sqlite_url: str) -> None:
    result = run("enqueue", "nope", "--db", sqlite_url)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: unknown task type 'nope'") and result.stderr.count("\n") == 1
    result = run("worker", "--app", "no_such_module:app", "--db", sqlite_url)
    assert result.returncode == 2 and "cannot import 'no_such_module'" in result.stderr


@pytest.mark.parametrize(
    ("app_path", "message"),
    [("no_such_module:app", "cannot import 'no_such_module'"), ("conveyor:__version__", "is not a Conveyor app"),
     ("conveyor", "--app must look like module:attribute")],
)
def test_a_bad_app_is_a_clear_error(runner: CliRunner, sqlite_url: str, app_path: str, message: str) -> None:
    result = invoke(runner, sqlite_url, "enqueue", "demo.echo", "--app", app_path, code=2)
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_the_database_comes_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/env.db"
    job_id = run("enqueue", "demo.echo", url=url).stdout.strip()
    with Conveyor(url) as app:
        assert app.require_job(job_id).type == "demo.echo"


# ---------------------------------------------------------------------------------------------- worker
def test_worker_burst_runs_everything_and_exits(sqlite_url: str, app: Conveyor) -> None:
    ok = app.enqueue("demo.echo", {"x": 1})
    bad = app.enqueue("demo.fail", {"times": -1}, max_retries=0)
    later = app.enqueue("demo.echo", {"x": 2}, delay=3600)
    result = run("worker", "--db", sqlite_url, "--burst", "--concurrency", "2")
    assert result.returncode == 0, result.stderr
    assert app.require_job(ok.id).result == {"x": 1}
    assert app.require_job(bad.id).status is JobStatus.FAILED
    assert app.require_job(later.id).status is JobStatus.SCHEDULED
    in_process = run("worker", "--db", sqlite_url, "--burst", "--processes", "0")
    assert in_process.returncode == 0, in_process.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "sqlite:////no/such/directory/x.db"], "does not exist"),
        (["--concurrency", "0"], "concurrency must be at least 1, got 0"),
        (["--concurrency", "-1"], "concurrency must be at least 1, got -1"),
        (["--grace", "-1"], "shutdown grace must not be negative"),
    ],
)
def test_worker_refuses_bad_options_at_once(sqlite_url: str, args: list[str], message: str) -> None:
    """Not a supervisor restarting crashing children forever: one line and exit code 2."""
    argv = ["worker", "--db", sqlite_url, *args] if "--db" not in args else ["worker", *args]
    result = run(*argv, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and message in result.stderr


# ---------------------------------------------------------------------------------------------- jobs
def test_jobs_list_show_and_json(runner: CliRunner, sqlite_url: str, app: Conveyor) -> None:
    a = app.enqueue("demo.echo", {"n": 1}, tags=["t:1"])
    b = app.enqueue("demo.sleep", {"seconds": 0.01}, queue="slow")
    drain(app, ["default"])
    listed = as_json(invoke(runner, sqlite_url, "jobs", "list", "--json"))
    assert [j["id"] for j in listed["jobs"]] == [b.id, a.id] and listed["next_cursor"] is None
    assert listed["jobs"][1]["status"] == "completed" and listed["jobs"][1]["result"] == {"n": 1}
    only = as_json(invoke(runner, sqlite_url, "jobs", "list", "--status", "pending", "--json"))
    assert [j["id"] for j in only["jobs"]] == [b.id]
    assert [j["id"] for j in as_json(invoke(runner, sqlite_url, "jobs", "list", "--tag", "t:1", "--json"))["jobs"]] \
        == [a.id]
    assert [j["id"] for j in as_json(invoke(runner, sqlite_url, "jobs", "list", "--queue", "slow", "--json"))
            ["jobs"]] == [b.id]
    first = as_json(invoke(runner, sqlite_url, "jobs", "list", "--limit", "1", "--json"))
    assert [j["id"] for j in first["jobs"]] == [b.id] and first["next_cursor"]
    second = as_json(invoke(runner, sqlite_url, "jobs", "list", "--limit", "1", "--cursor", first["next_cursor"],
                            "--json"))
    assert [j["id"] for j in second["jobs"]] == [a.id]

    human = invoke(runner, sqlite_url, "jobs", "list").stdout
    assert "demo.echo" in human and "completed" in human and "pending" in human
    assert a.id in human and b.id in human  # whole ids, not cut to fit 80 columns
    shown = as_json(invoke(runner, sqlite_url, "jobs", "show", a.id, "--json"))
    assert shown["id"] == a.id and shown["attempts"] == 1 and shown["completed_at"].endswith("Z")
    human = invoke(runner, sqlite_url, "jobs", "show", a.id).stdout
    assert "history" in human and "processing" in human and "completed" in human


def test_jobs_wait(runner: CliRunner, sqlite_url: str, app: Conveyor) -> None:
    done = app.enqueue("demo.echo", {"v": 1})
    failed = app.enqueue("demo.fail", {"message": "bad luck"}, max_retries=0)
    drain(app)
    result = as_json(invoke(runner, sqlite_url, "jobs", "wait", done.id, "--json"))
    assert result["status"] == "completed" and result["result"] == {"v": 1}
    assert "completed" in invoke(runner, sqlite_url, "jobs", "wait", done.id).stdout
    result = invoke(runner, sqlite_url, "jobs", "wait", failed.id, code=1)
    assert "bad luck" in result.stderr and result.stderr.count("\n") == 1
    waiting = app.enqueue("demo.echo", {})
    result = invoke(runner, sqlite_url, "jobs", "wait", waiting.id, "--timeout", "0.2", "--poll", "0.05", code=3)
    assert "timed out" in result.stderr


def test_jobs_wait_follows_a_real_worker(runner: CliRunner, sqlite_url: str, app: Conveyor) -> None:
    job = app.enqueue("demo.sleep", {"seconds": 0.5, "steps": 5})
    worker = subprocess.Popen(
        [CONVEYOR, "worker", "--db", sqlite_url, "--processes", "0"], cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = invoke(runner, sqlite_url, "jobs", "wait", job.id, "--poll", "0.05", "--timeout", "60", "--json")
    finally:
        worker.terminate()
        worker.wait(20)
    assert as_json(result)["result"] == {"slept": 0.5} and as_json(result)["progress"] == 100


def test_jobs_cancel_retry_delete(runner: CliRunner, sqlite_url: str, app: Conveyor) -> None:
    job = app.enqueue("demo.echo", {})
    cancelled = as_json(invoke(runner, sqlite_url, "jobs", "cancel", job.id, "--json"))
    assert cancelled["status"] == "cancelled"
    result = invoke(runner, sqlite_url, "jobs", "cancel", job.id, code=2)
    assert "only an open job can be cancelled" in result.stderr
    assert "pending" in invoke(runner, sqlite_url, "jobs", "retry", job.id).stdout
    invoke(runner, sqlite_url, "jobs", "retry", job.id, code=2)  # pending: nothing to retry
    assert app.require_job(job.id).status is JobStatus.PENDING
    assert "deleted" in invoke(runner, sqlite_url, "jobs", "delete", job.id).stdout
    assert app.get_job(job.id) is None
    invoke(runner, sqlite_url, "jobs", "delete", job.id, code=2)
    invoke(runner, sqlite_url, "jobs", "cancel", "missing", code=2)


def test_jobs_purge(runner: CliRunner, sqlite_url: str, app: Conveyor) -> None:
    app.enqueue("demo.echo", {})
    failed = app.enqueue("demo.fail", {}, max_retries=0)
    open_job = app.enqueue("demo.echo", {}, delay=600)
    drain(app)
    assert as_json(invoke(runner, sqlite_url, "jobs", "purge", "--json")) == {"deleted": 0}  # retention: 7 days
    assert as_json(invoke(runner, sqlite_url, "jobs", "purge", "--older-than", "0d", "--status", "failed",
                          "--json")) == {"deleted": 1}
    assert app.get_job(failed.id) is None
    assert "deleted 1 finished job" in invoke(runner, sqlite_url, "jobs", "purge", "--older-than", "0s").stdout
    assert [j.id for j in app.list_jobs().jobs] == [open_job.id]
    invoke(runner, sqlite_url, "jobs", "purge", "--older-than", "a week", code=2)


# ---------------------------------------------------------------------------------------------- queues, stats, check
def test_queues_list_pause_resume_set(runner: CliRunner, sqlite_url: str, app: Conveyor) -> None:
    app.enqueue("demo.echo", {}, queue="reports")
    paused = as_json(invoke(runner, sqlite_url, "queues", "pause", "reports", "--json"))
    assert paused["paused"] is True and paused["counts"]["pending"] == 1
    assert {q.name: q.paused for q in app.list_queues()}["reports"] is True
    assert "running" in invoke(runner, sqlite_url, "queues", "resume", "reports").stdout
    changed = as_json(invoke(runner, sqlite_url, "queues", "set", "reports", "--concurrency", "2",
                             "--rate-limit", "5", "--paused", "--json"))
    assert (changed["concurrency"], changed["rate_limit"], changed["paused"]) == (2, 5.0, True)
    lifted = as_json(invoke(runner, sqlite_url, "queues", "set", "reports", "--concurrency", "none", "--running",
                            "--json"))
    assert (lifted["concurrency"], lifted["rate_limit"], lifted["paused"]) == (None, 5.0, False)
    listed = as_json(invoke(runner, sqlite_url, "queues", "list", "--json"))
    assert {q["name"] for q in listed["queues"]} == {"default", "reports"}
    assert "reports" in invoke(runner, sqlite_url, "queues", "list").stdout


def test_stats(runner: CliRunner, sqlite_url: str, app: Conveyor) -> None:
    app.enqueue("demo.echo", {})
    app.enqueue("demo.fail", {}, max_retries=0)
    app.enqueue("demo.echo", {}, delay=60)
    drain(app)
    stats = as_json(invoke(runner, sqlite_url, "stats", "--json"))
    assert stats["counts"]["completed"] == 1 and stats["counts"]["failed"] == 1
    assert stats["counts"]["scheduled"] == 1
    assert stats["counts_by_type"]["demo.echo"] == {"completed": 1, "scheduled": 1}
    assert stats["workers"] == 0 and isinstance(stats["throughput"], list)
    human = invoke(runner, sqlite_url, "stats").stdout
    assert "demo.echo" in human and "live workers: 0" in human


def test_stats_name_types_that_no_live_worker_runs(runner: CliRunner, sqlite_url: str, app: Conveyor) -> None:
    import time

    from conveyor.backends.base import WorkerBeat

    other = Conveyor(sqlite_url)

    @other.task
    def order(n: int) -> int:
        return n

    other.enqueue_many("order", [{"n": 1}, {"n": 2}])
    now = time.time()
    app.backend.heartbeat(WorkerBeat("w", "h", 1, None, 4, now, now, now + 60, types=tuple(app.tasks)))
    stats = as_json(invoke(runner, sqlite_url, "stats", "--json"))
    assert stats["unserved"] == [{"type": "order", "pending": 2, "scheduled": 0}]
    assert "no worker for order: 2 pending" in invoke(runner, sqlite_url, "stats").stdout
    other.close()


def test_check_runs_a_round_trip_without_a_worker(runner: CliRunner, sqlite_url: str, app: Conveyor) -> None:
    result = invoke(runner, sqlite_url, "check")
    assert "round trip" in result.stdout
    assert "embeddings: all-MiniLM-L6-v2 on ONNX Runtime" in result.stdout  # the ingestion plugin's lines
    assert "search: vectors by" in result.stdout
    assert app.list_jobs().jobs == []  # it cleans up after itself
    result = run("check", "--db", sqlite_url)
    assert result.returncode == 0 and "round trip" in result.stdout


def test_check_brings_its_own_demo_task(sqlite_url: str) -> None:
    result = run("check", "--db", sqlite_url, "--app", "tests.worker.process_tasks:app")
    assert result.returncode == 0, result.stderr
    assert "round trip" in result.stdout


def test_migrate_and_help(runner: CliRunner, sqlite_url: str) -> None:
    assert "schema up to date" in invoke(runner, sqlite_url, "migrate").stdout
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("worker", "enqueue", "jobs", "queues", "stats", "check"):
        assert command in result.stdout


def test_job_data_is_printed_as_it_is_never_as_markup(runner: CliRunner, sqlite_url: str, app: Conveyor) -> None:
    @app.task(name="odd[/]type", max_retries=0)
    def odd(ctx: object, **args: object) -> None:
        raise ValueError("[bold]boom[/] :boom:")

    job = app.enqueue("odd[/]type", {"x": "[/]", "y": "[red]r[/red]"}, queue="q[/]", tags=["[b]t"])
    drain(app)
    shown = invoke(runner, sqlite_url, "jobs", "show", job.id).stdout
    assert '"[/]"' in shown and "[red]r[/red]" in shown and "[b]t" in shown and "q[/]" in shown
    assert "[bold]boom[/] :boom:" in shown  # the error, neither styled nor an emoji
    listed = invoke(runner, sqlite_url, "jobs", "list").stdout
    assert "odd[/]type" in listed and "q[/]" in listed
    assert "q[/]" in invoke(runner, sqlite_url, "queues", "list").stdout
    assert "odd[/]type" in invoke(runner, sqlite_url, "stats").stdout
    app.retry(job.id)
    app.cancel(job.id)
    result = invoke(runner, sqlite_url, "jobs", "wait", job.id, code=1)
    assert "cancelled" in result.stderr


def test_the_plugins_commands_join_when_the_command_line_runs() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    assert "ingest" in result.stdout and "search" in result.stdout  # the ingestion plugin's


def test_a_plugins_commands_import_before_the_command_line() -> None:
    """The ingestion's commands use `conveyor.cli.common`; imported first, they still find the CLI whole."""
    code = (
        "import conveyor.ingest.cli, conveyor.cli\n"
        "conveyor.cli.add_plugin_commands(); conveyor.cli.add_plugin_commands()\n"  # once, however often asked
        "import typer.main\n"
        "print(sorted(typer.main.get_command(conveyor.cli.cli).commands))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'ingest'" in out and "'search'" in out and out.count("'search'") == 1


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://me:secret@db:5432/jobs", "postgresql://me:***@db:5432/jobs"),
        ("postgresql://me@db/jobs", "postgresql://me@db/jobs"),
        ("sqlite:///./conveyor.db", "sqlite:///./conveyor.db"),
    ],
)
def test_check_shows_the_database_without_its_password(url: str, shown: str) -> None:
    from conveyor.cli.check import redact

    assert redact(url) == shown


def test_queues_groups_and_group_limits(runner: CliRunner, sqlite_url: str, app: Conveyor) -> None:
    for key in ("tenant:a", "tenant:a", "tenant:b"):
        invoke(runner, sqlite_url, "enqueue", "demo.echo", "--queue", "mail", "--group-key", key)
    info = as_json(invoke(runner, sqlite_url, "queues", "set", "mail", "--group-concurrency", "2",
                          "--group-rate-limit", "5", "--json"))
    assert (info["group_concurrency"], info["group_rate_limit"]) == (2, 5.0)
    listed = as_json(invoke(runner, sqlite_url, "queues", "groups", "mail", "--json"))
    assert listed["total"] == 2 and [(g["key"], g["ready"]) for g in listed["groups"]] == [("tenant:a", 2),
                                                                                            ("tenant:b", 1)]
    table = invoke(runner, sqlite_url, "queues", "groups", "mail").stdout
    assert "tenant:a" in table and "2 of 2 keys" in table
    bad = invoke(runner, sqlite_url, "queues", "set", "mail", "--group-concurrency", "0", code=2)
    assert "group_concurrency must be an integer from 1" in bad.output
    invoke(runner, sqlite_url, "queues", "set", "mail", "--group-rate-limit", "abc", code=2)
    too_long = invoke(runner, sqlite_url, "enqueue", "demo.echo", "--group-key", "k" * 1000, code=2)
    assert "group_key" in too_long.output
    assert len(app.list_jobs().jobs) == 3
