"""`conveyor webhooks ...` against a real database (both backends) and a real local receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from conveyor.cli import cli
from tests.webhooks.receiver import Receiver, serve_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as r:
        yield r


def invoke(url: str, *args: str, code: int = 0) -> Result:
    argv = ["webhooks", args[0], "--db", url, *args[1:]]
    result = CliRunner().invoke(cli, argv, env={"CONVEYOR_WEBHOOK_ALLOW_PRIVATE": "true"})
    assert result.exit_code == code, f"{argv} -> {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def test_webhooks_commands(db_url: str, receiver: Receiver) -> None:
    added = as_json(invoke(db_url, "add", receiver.url, "--event", "job.completed", "-e", "job.failed",
                           "--queue", "mail", "--json"))
    assert added["secret"].startswith("whsec_")
    assert added["events"] == ["job.completed", "job.failed"] and added["filter"]["queue"] == "mail"
    hook_id = added["id"]
    assert "secret (shown once): whsec_" in invoke(db_url, "add", receiver.url, "-e", "job.created").stdout
    listed = as_json(invoke(db_url, "list", "--json"))["webhooks"]
    assert listed[0]["id"] == hook_id and all("secret" not in w for w in listed)
    assert as_json(invoke(db_url, "pause", hook_id, "--json"))["paused"] is True
    assert "paused" in invoke(db_url, "list").stdout
    assert as_json(invoke(db_url, "resume", hook_id, "--json"))["paused"] is False
    assert "delivered" in invoke(db_url, "test", hook_id).stdout
    deliveries = as_json(invoke(db_url, "deliveries", hook_id, "--json"))["deliveries"]
    assert [(d["event"], d["status_code"]) for d in deliveries] == [("webhook.test", 200)]
    assert "webhook.test" in invoke(db_url, "deliveries", hook_id).stdout
    invoke(db_url, "delete", hook_id)
    assert "not found" in invoke(db_url, "delete", hook_id, code=2).output


def test_bad_input_names_the_field(sqlite_url: str) -> None:
    assert "events" in invoke(sqlite_url, "add", "http://example.com/", "-e", "job.nope", code=2).output
    assert "url" in invoke(sqlite_url, "add", "file:///etc/passwd", "-e", "job.completed", code=2).output
    result = CliRunner().invoke(cli, ["webhooks", "add", "--db", sqlite_url, "http://127.0.0.1/", "-e",
                                      "job.completed"], env={"CONVEYOR_WEBHOOK_ALLOW_PRIVATE": "false"})
    assert result.exit_code == 2 and "loopback" in result.output
    assert as_json(invoke(sqlite_url, "list", "--json")) == {"webhooks": []}


def test_enqueue_webhook_url(sqlite_url: str, receiver: Receiver) -> None:
    from conveyor import Conveyor
    from conveyor.webhooks import subscriptions

    runner = CliRunner()
    bad = runner.invoke(cli, ["enqueue", "demo.echo", "--db", sqlite_url, "--webhook-url", "ftp://x/"])
    assert bad.exit_code == 2 and "webhook_url" in bad.output
    private = runner.invoke(cli, ["enqueue", "demo.echo", "--db", sqlite_url, "--webhook-url", receiver.url],
                            env={"CONVEYOR_WEBHOOK_ALLOW_PRIVATE": "false"})
    assert private.exit_code == 2 and "CONVEYOR_WEBHOOK_ALLOW_PRIVATE" in private.output
    good = runner.invoke(cli, ["enqueue", "demo.echo", "--db", sqlite_url, "--webhook-url", receiver.url],
                         env={"CONVEYOR_WEBHOOK_ALLOW_PRIVATE": "true"})
    assert good.exit_code == 0, good.output
    job_id = good.stdout.strip()
    app = Conveyor(sqlite_url)
    try:
        app.run_worker(burst=True)
        [delivery] = subscriptions.store(app).job_deliveries(job_id)
        assert (delivery.event, delivery.url) == ("job.completed", receiver.url)
    finally:
        app.close()


def test_job_secret(db_url: str) -> None:
    shown = invoke(db_url, "job-secret").stdout.strip()
    assert shown.startswith("whsec_")
    assert as_json(invoke(db_url, "job-secret", "--json")) == {"secret": shown, "source": "generated"}
    configured = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
    result = CliRunner().invoke(cli, ["webhooks", "job-secret", "--db", db_url],
                                env={"CONVEYOR_WEBHOOK_SECRET": configured})
    assert result.exit_code == 0 and result.stdout.strip() == configured
