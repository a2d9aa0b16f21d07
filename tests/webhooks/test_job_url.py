"""A job's own `webhook_url` gets its terminal event on every path that ends the job, written by the database in the
transaction of that change, on both backends: completed, failed, cancelled while scheduled, pending, waiting or
running, cancelled transitively by a parent's failure, cancelled at enqueue (a parent already failed), a workflow
cancelled as a whole."""

from __future__ import annotations

from conveyor import Cancel, Conveyor, JobContext
from conveyor.webhooks import subscriptions

URL = "https://example.com/hook"


def deliveries(app: Conveyor, job_id: str) -> list[tuple[str, str | None]]:
    return [(d.event, d.url) for d in subscriptions.store(app).job_deliveries(job_id)]


def test_completed_and_failed(hook_app: Conveyor) -> None:
    done = hook_app.enqueue("add", {"a": 1, "b": 1}, webhook_url=URL)
    failed = hook_app.enqueue("boom", {}, webhook_url=URL)
    hook_app.run_worker(burst=True)
    assert deliveries(hook_app, done.id) == [("job.completed", URL)]
    assert deliveries(hook_app, failed.id) == [("job.failed", URL)]


def test_cancelled_while_pending_scheduled_or_waiting(hook_app: Conveyor) -> None:
    pending = hook_app.enqueue("add", {"a": 1, "b": 1}, webhook_url=URL)
    scheduled = hook_app.enqueue("add", {"a": 1, "b": 1}, delay=3600, webhook_url=URL)
    parent = hook_app.enqueue("add", {"a": 1, "b": 1})
    waiting = hook_app.enqueue("add", {"a": 1, "b": 1}, depends_on=[parent.id], webhook_url=URL)
    assert hook_app.require_job(waiting.id).status == "waiting"
    for job in (pending, scheduled, waiting):
        hook_app.cancel(job.id)
        assert deliveries(hook_app, job.id) == [("job.cancelled", URL)]


def test_cancelled_while_running(hook_app: Conveyor) -> None:
    """A cancel requested while the job runs: it ends `cancelled` when the attempt ends (returned or raised)."""

    @hook_app.task(name="self_cancel", max_retries=0)
    def self_cancel(ctx: JobContext, then_fail: bool) -> str:
        hook_app.cancel(ctx.job_id)
        if then_fail:
            raise RuntimeError("after the cancel")
        return "returned after the cancel"

    @hook_app.task(name="cancels", max_retries=0)
    def cancels() -> None:
        raise Cancel("given up")

    returned = hook_app.enqueue("self_cancel", {"then_fail": False}, webhook_url=URL)
    raised = hook_app.enqueue("self_cancel", {"then_fail": True}, webhook_url=URL)
    by_task = hook_app.enqueue("cancels", {}, webhook_url=URL)
    hook_app.run_worker(burst=True)
    for job in (returned, raised, by_task):
        assert hook_app.require_job(job.id).status == "cancelled"
        assert deliveries(hook_app, job.id) == [("job.cancelled", URL)]


def test_cancelled_transitively_by_a_failed_parent(hook_app: Conveyor) -> None:
    parent = hook_app.enqueue("boom", {}, webhook_url=URL + "/parent")
    child = hook_app.enqueue("add", {"a": 1, "b": 1}, depends_on=[parent.id], webhook_url=URL + "/child")
    grandchild = hook_app.enqueue("add", {"a": 1, "b": 1}, depends_on=[child.id], webhook_url=URL + "/grandchild")
    hook_app.run_worker(burst=True)
    assert hook_app.require_job(grandchild.id).status == "cancelled"
    assert deliveries(hook_app, parent.id) == [("job.failed", URL + "/parent")]
    assert deliveries(hook_app, child.id) == [("job.cancelled", URL + "/child")]
    assert deliveries(hook_app, grandchild.id) == [("job.cancelled", URL + "/grandchild")]
    # retried, the parent puts them back to wait; they end again, and say so again
    hook_app.retry(parent.id)
    hook_app.run_worker(burst=True)
    assert deliveries(hook_app, grandchild.id) == [("job.cancelled", URL + "/grandchild")] * 2


def test_cancelled_at_enqueue_by_a_parent_that_already_failed(hook_app: Conveyor) -> None:
    parent = hook_app.enqueue("boom", {})
    hook_app.run_worker(burst=True)
    cancelled_parent = hook_app.enqueue("add", {"a": 1, "b": 1})
    hook_app.cancel(cancelled_parent.id)
    one = hook_app.enqueue("add", {"a": 1, "b": 1}, depends_on=[parent.id], webhook_url=URL + "/1")
    many = hook_app.enqueue_batch(
        [{"type": "add", "args": {"a": i, "b": 0}, "depends_on": [cancelled_parent.id], "webhook_url": f"{URL}/{i}"}
         for i in range(3)]
    )
    assert hook_app.require_job(one.id).status == "cancelled"
    assert deliveries(hook_app, one.id) == [("job.cancelled", URL + "/1")]
    for i, job in enumerate(many):
        assert hook_app.require_job(job.id).status == "cancelled"
        assert deliveries(hook_app, job.id) == [("job.cancelled", f"{URL}/{i}")]
    # an ordinary job enqueued pending gets nothing until it ends
    plain = hook_app.enqueue("add", {"a": 1, "b": 1}, webhook_url=URL)
    assert deliveries(hook_app, plain.id) == []


def test_steps_of_a_cancelled_workflow(hook_app: Conveyor) -> None:
    wf = hook_app.workflow("wf")
    first = wf.step("first", "add", a=1, b=1, options={"webhook_url": URL + "/first"})
    wf.step("second", "add", a=1, b=1, after=[first], options={"webhook_url": URL + "/second"})
    run = wf.enqueue()
    hook_app.cancel_workflow(run.id)
    steps = {s.step: s for s in hook_app.require_workflow(run.id).steps}
    assert {name: s.status for name, s in steps.items()} == {"first": "cancelled", "second": "cancelled"}
    assert deliveries(hook_app, steps["first"].id) == [("job.cancelled", URL + "/first")]
    assert deliveries(hook_app, steps["second"].id) == [("job.cancelled", URL + "/second")]


def test_the_job_shows_its_webhook_url(hook_app: Conveyor) -> None:
    """In the Job model and its JSON, as returned by enqueue and read back, on every enqueue path."""
    one = hook_app.enqueue("add", {"a": 1, "b": 1}, webhook_url=URL)
    [batched] = hook_app.enqueue_many("add", [{"a": 1, "b": 1}], webhook_url=URL + "/many")
    child = hook_app.enqueue("add", {"a": 1, "b": 1}, depends_on=[one.id], webhook_url=URL + "/child")
    wf = hook_app.workflow("wf")
    wf.step("only", "add", a=1, b=1, options={"webhook_url": URL + "/step"})
    [step] = wf.enqueue().steps or []
    plain = hook_app.enqueue("add", {"a": 1, "b": 1})
    expected = {one.id: URL, batched.id: URL + "/many", child.id: URL + "/child", step.id: URL + "/step",
                plain.id: None}
    assert {j.id: j.webhook_url for j in (one, batched, child, step, plain)} == expected
    assert {j: hook_app.require_job(j).webhook_url for j in expected} == expected
    assert {j: hook_app.require_job(j).to_dict()["webhook_url"] for j in expected} == expected


def test_failed_when_its_lease_expires_out_of_attempts(hook_app: Conveyor) -> None:
    """The worker died holding it (no heartbeat) and it had no retry left: the rescuer ends it `failed`."""
    from conveyor.backends.params import ClaimParams

    job = hook_app.enqueue("boom", {}, webhook_url=URL)  # max_retries=0
    now = hook_app.clock()
    claimed = hook_app.backend.claim_jobs(ClaimParams("dead-worker", 1, now, now + 1.0))
    assert [c.id for c in claimed.jobs] == [job.id]
    assert hook_app.backend.rescue_expired(now + 60.0) == 1
    assert hook_app.require_job(job.id).status == "failed"
    assert deliveries(hook_app, job.id) == [("job.failed", URL)]
