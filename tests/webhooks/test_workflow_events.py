"""`workflow.completed` and `workflow.failed` (SPEC section 7): written in the transaction of the step change that ends
the workflow, to the subscriptions that ask for them, and sent with the workflow JSON as `data`; both backends."""

from __future__ import annotations

from standardwebhooks.webhooks import Webhook as Verifier

from conveyor import Conveyor
from conveyor.webhooks import EVENTS, subscriptions
from conveyor.webhooks.subscriptions import WebhookSpec
from tests.webhooks.receiver import Receiver, drain


def workflow_events(app: Conveyor, webhook_id: str) -> list[tuple[str, str]]:
    rows = subscriptions.store(app).webhook_deliveries(webhook_id)
    return [(d.event, d.status) for d in reversed(rows) if d.event.startswith("workflow.")]


def test_workflow_events_are_known() -> None:
    assert {"workflow.completed", "workflow.failed"} <= set(EVENTS)


def test_a_completed_workflow_is_delivered_signed(hook_app: Conveyor, receiver: Receiver) -> None:
    hook = subscriptions.create(hook_app, WebhookSpec(url=receiver.url, events=["workflow.completed"]))
    jobs_only = subscriptions.create(hook_app, WebhookSpec(url=receiver.url + "/jobs", events=["job.completed"]))
    wf = hook_app.workflow("report", metadata={"project": 7})
    first = wf.step("first", "add", a=1, b=1)
    wf.step("second", "add", a=2, b=2, after=[first])
    run = wf.enqueue()
    assert workflow_events(hook_app, hook.id) == []  # running
    hook_app.run_worker(burst=True)  # runs both steps
    assert hook_app.require_workflow(run.id).status == "completed"
    assert workflow_events(hook_app, hook.id) == [("workflow.completed", "pending")]
    assert workflow_events(hook_app, jobs_only.id) == []
    drain(hook_app)
    [sent] = [r for r in receiver.requests if r.path == "/hook"]
    Verifier(hook.secret).verify(sent.body, sent.headers)
    body = sent.json
    assert body["type"] == "workflow.completed"
    assert body["data"].keys() == hook_app.require_workflow(run.id).to_dict().keys() - {"steps"}  # as listed
    assert (body["data"]["id"], body["data"]["name"], body["data"]["status"], body["data"]["metadata"],
            body["data"]["steps_total"], body["data"]["steps_done"]) == (run.id, "report", "completed", {"project": 7},
                                                                         2, 2)
    assert body["data"]["completed_at"] is not None
    assert workflow_events(hook_app, hook.id) == [("workflow.completed", "delivered")]


def test_a_failed_workflow_and_its_retry(hook_app: Conveyor) -> None:
    hook = subscriptions.create(hook_app, WebhookSpec(url="http://127.0.0.1:9/",
                                                      events=["workflow.completed", "workflow.failed"]))
    calls = {"n": 0}

    @hook_app.task(name="flaky", max_retries=0)
    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first time")
        return "ok"

    wf = hook_app.workflow("flaky")
    first = wf.step("first", "flaky")
    wf.step("second", "add", a=1, b=1, after=[first])  # cancelled by the failure: the workflow ends failed
    run = wf.enqueue()
    hook_app.run_worker(burst=True)
    assert hook_app.require_workflow(run.id).status == "failed"
    assert [e for e, _ in workflow_events(hook_app, hook.id)] == ["workflow.failed"]
    hook_app.retry_workflow(run.id)
    for _ in range(2):
        hook_app.run_worker(burst=True)
    assert hook_app.require_workflow(run.id).status == "completed"
    assert [e for e, _ in workflow_events(hook_app, hook.id)] == ["workflow.failed", "workflow.completed"]


def test_a_cancelled_workflow_is_no_failure(hook_app: Conveyor) -> None:
    """Cancelled as a whole, a workflow ends `cancelled`: not `workflow.failed` (the SPEC lists no
    `workflow.cancelled`); its steps' `job.cancelled` still go out."""
    hook = subscriptions.create(hook_app, WebhookSpec(url="http://127.0.0.1:9/",
                                                      events=["workflow.failed", "job.cancelled"]))
    wf = hook_app.workflow("stopped")
    wf.step("only", "add", a=1, b=1)
    run = wf.enqueue()
    hook_app.cancel_workflow(run.id)
    assert hook_app.require_workflow(run.id).status == "cancelled"
    assert [d.event for d in subscriptions.store(hook_app).webhook_deliveries(hook.id)] == ["job.cancelled"]


def test_paused_subscriptions_get_no_workflow_event(hook_app: Conveyor) -> None:
    hook = subscriptions.create(hook_app, WebhookSpec(url="http://127.0.0.1:9/", events=["workflow.completed"],
                                                      paused=True))
    wf = hook_app.workflow("quiet")
    wf.step("only", "add", a=1, b=1)
    wf.enqueue()
    hook_app.run_worker(burst=True)
    assert workflow_events(hook_app, hook.id) == []
