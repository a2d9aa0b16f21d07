"""Workflows through the Python API on both backends: fan-out/fan-in with parent_results by step name, status and
progress kept by the database, failure, cancel and retry, and validation that stores nothing."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import Conveyor, InvalidArgumentsError, InvalidStateError, JobContext, JobStatus, UnknownTaskError
from conveyor.backends.params import ClaimParams, Completed, Failed
from conveyor.workflows import WorkflowStatus


@pytest.fixture
def tasks(app: Conveyor) -> Conveyor:
    @app.task
    def fetch(ctx: JobContext, i: int) -> int:
        return i * 10

    @app.task
    def summarize(ctx: JobContext) -> dict[str, Any]:
        return dict(ctx.parent_results)

    @app.task(max_retries=0)
    def spawn(ctx: JobContext, n: int) -> int:
        steps = [{"name": f"found-{i}", "type": "fetch", "args": {"i": i}, "after": ["spawner"]} for i in range(n)]
        added = ctx.extend_workflow(steps, before=["join"])
        assert ctx.extend_workflow(steps, before=["join"]) == []  # a re-run adds nothing twice
        return len(added)

    @app.task(max_retries=0)
    def flaky(ctx: JobContext, key: str) -> str:
        if ctx.attempt == 1:
            raise RuntimeError(f"first attempt of {key} fails")
        return key

    return app


def nothing_stored(app: Conveyor) -> bool:
    return not app.list_jobs().jobs and not app.list_workflows()


def test_fan_out_fan_in_passes_results_by_step_name(tasks: Conveyor) -> None:
    app = tasks
    wf = app.workflow("report", metadata={"project": 42})
    pages = [wf.step(f"fetch-{i}", "fetch", i=i) for i in range(4)]
    summary = wf.step("summarize", app.tasks["summarize"], after=pages)
    wf.step("notify", "demo.echo", after=[summary], options={"priority": 7, "tags": ["wf"]}, note="done")
    run = wf.enqueue()
    assert run.status is WorkflowStatus.RUNNING and run.steps_total == 6 and run.steps_done == 0
    assert run.metadata == {"project": 42}
    assert [j.step for j in run.steps or []] == ["fetch-0", "fetch-1", "fetch-2", "fetch-3", "summarize", "notify"]
    assert run.step("summarize").status is JobStatus.WAITING
    assert sorted(run.step("summarize").depends_on) == sorted(run.step(f"fetch-{i}").id for i in range(4))
    notify = run.step("notify")
    assert notify.priority == 7 and notify.tags == ["wf"] and notify.workflow_id == run.id

    app.run_worker(concurrency=3, burst=True)

    done = app.wait_workflow(run.id, timeout=10)
    assert done.status is WorkflowStatus.COMPLETED and done.steps_done == 6 and done.completed_at is not None
    assert done.step("summarize").result == {f"fetch-{i}": i * 10 for i in range(4)}
    assert done.step("notify").result == {"note": "done"}
    assert [w.id for w in app.list_workflows(status="completed", name="report")] == [run.id]
    assert app.list_workflows(status="running") == []


def test_a_failed_step_fails_the_workflow_and_retry_runs_the_rest(tasks: Conveyor) -> None:
    app = tasks
    wf = app.workflow("etl")
    extract = wf.step("extract", "flaky", key="x")
    load = wf.step("load", "fetch", after=[extract], i=1)
    wf.step("report", "summarize", after=[load])
    run = wf.enqueue()
    app.run_worker(concurrency=2, burst=True)

    failed = app.require_workflow(run.id)
    assert failed.status is WorkflowStatus.FAILED and failed.steps_done == 0
    assert failed.step("extract").status is JobStatus.FAILED
    for name in ("load", "report"):
        step = failed.step(name)
        assert step.status is JobStatus.CANCELLED and "'extract'" in (step.error or "")

    again = app.retry_workflow(run.id)
    assert again.status is WorkflowStatus.RUNNING
    assert [again.step(n).status for n in ("extract", "load", "report")] == [
        JobStatus.PENDING, JobStatus.WAITING, JobStatus.WAITING]
    app.run_worker(concurrency=2, burst=True)
    done = app.require_workflow(run.id)
    assert done.status is WorkflowStatus.COMPLETED and done.steps_done == 3
    assert done.step("report").result == {"load": 10}


def test_cancel_ends_the_workflow_cancelled(tasks: Conveyor) -> None:
    app = tasks
    wf = app.workflow("slow")
    first = wf.step("first", "fetch", i=1, options={"delay": 3600})
    wf.step("second", "fetch", i=2, after=[first])
    run = wf.enqueue()
    cancelled = app.cancel_workflow(run.id)
    assert cancelled.status is WorkflowStatus.CANCELLED and cancelled.completed_at is not None
    assert {j.status for j in cancelled.steps or []} == {JobStatus.CANCELLED}
    with pytest.raises(Exception, match="only a running workflow"):
        app.cancel_workflow(run.id)
    assert app.retry_workflow(run.id).status is WorkflowStatus.RUNNING


def test_a_running_workflow_grows_and_its_fan_in_waits_for_the_new_steps(tasks: Conveyor) -> None:
    app = tasks
    wf = app.workflow("crawl")
    spawner = wf.step("spawner", "spawn", n=3)
    wf.step("join", "summarize", after=[spawner])
    run = wf.enqueue()
    added = app.extend_workflow(run.id, [{"name": "extra", "type": "fetch", "args": {"i": 9}}], before=["join"])
    assert [(j.step, j.status, j.workflow_id) for j in added] == [("extra", JobStatus.PENDING, run.id)]
    assert app.require_workflow(run.id).steps_total == 3

    app.run_worker(concurrency=2, burst=True)

    done = app.require_workflow(run.id)
    assert done.status is WorkflowStatus.COMPLETED and (done.steps_total, done.steps_done) == (6, 6)
    assert done.step("spawner").result == 3
    assert done.step("join").result == {"spawner": 3, "extra": 90, "found-0": 0, "found-1": 10, "found-2": 20}
    assert sorted(done.step("found-1").depends_on) == [done.step("spawner").id]
    join_started = done.step("join").started_at
    assert join_started is not None
    assert all((done.step(f"found-{i}").completed_at or join_started) <= join_started for i in range(3))
    with pytest.raises(InvalidStateError, match="only a running workflow can grow"):
        app.extend_workflow(run.id, [{"name": "late", "type": "fetch", "args": {"i": 1}}])


def test_one_worker_cycle_that_ends_several_parents_releases_their_child_once(tasks: Conveyor) -> None:
    """The batched completions of one cycle (on PostgreSQL `conveyor_work`, which releases and counts once, at the
    cycle's end): three parents completed in one call release their child once, and a cycle that completes one
    parent and fails another cancels the child that waited for both."""
    app = tasks
    wf = app.workflow("cycle")
    parents = [wf.step(f"p{i}", "fetch", i=i) for i in range(3)]
    wf.step("join", "summarize", after=parents)
    wf.step("a", "fetch", i=7)
    wf.step("b", "flaky", key="b")
    wf.step("both", "summarize", after=["a", "b"])
    run = wf.enqueue()
    now = app.clock()
    held = {c.id: c for c in app.backend.claim_jobs(ClaimParams("w1", 10, now, now + 30)).jobs}
    steps = {j.step: j for j in run.steps or []}
    assert set(held) == {steps[n].id for n in ("p0", "p1", "p2", "a", "b")}
    outcomes = [Completed(steps[f"p{i}"].id, held[steps[f"p{i}"].id].lease, i) for i in range(3)]
    outcomes += [Completed(steps["a"].id, held[steps["a"].id].lease, 7),
                 Failed(steps["b"].id, held[steps["b"].id].lease, "boom")]
    lost, _ = app.backend.finish_and_claim(outcomes, [], now + 1, None)
    assert lost == []

    after = app.require_workflow(run.id)
    assert after.step("join").status is JobStatus.PENDING
    moves = [(e.from_status, e.to_status) for e in app.job_events(steps["join"].id)]
    assert moves == [(None, JobStatus.WAITING), (JobStatus.WAITING, JobStatus.PENDING)]
    both = after.step("both")
    assert both.status is JobStatus.CANCELLED and "'b'" in (both.error or "")
    assert (after.status, after.steps_total, after.steps_done) == (WorkflowStatus.RUNNING, 7, 4)
    app.run_worker(concurrency=1, burst=True)
    done = app.require_workflow(run.id)
    assert done.step("join").result == {"p0": 0, "p1": 1, "p2": 2}  # the results the cycle wrote
    assert (done.status, done.steps_done) == (WorkflowStatus.FAILED, 5) and done.completed_at is not None


def test_growing_a_workflow_is_refused_with_nothing_stored(tasks: Conveyor) -> None:
    app = tasks
    wf = app.workflow("grow")
    first = wf.step("first", "fetch", i=1, options={"delay": 3600})
    wf.step("second", "fetch", i=2, after=[first])
    run = wf.enqueue()
    refusals: list[tuple[list[dict[str, Any]], list[str], type[Exception], str]] = [
        ([{"name": "x", "type": "fetch", "args": {"i": 1}, "after": ["second"]}], [], InvalidStateError,
         "step 'second' is waiting"),
        ([{"name": "x", "type": "fetch", "args": {"i": 1}}], ["first"], InvalidStateError, "only a waiting step"),
        ([{"name": "x", "type": "fetch", "args": {"i": 1}, "after": ["ghost"]}], [], InvalidArgumentsError, "'ghost'"),
        ([{"name": "x", "type": "fetch", "args": {"i": 1}}], ["ghost"], InvalidArgumentsError, "'ghost'"),
        ([{"name": "x", "type": "fetch", "args": {"i": "no"}}], [], InvalidArgumentsError, "step 'x'"),
        ([{"name": "x", "type": "fetch", "args": {"i": 1}, "after": ["y"]},
          {"name": "y", "type": "fetch", "args": {"i": 1}, "after": ["x"]}], [], InvalidArgumentsError, "cycle"),
    ]
    for steps, before, error, message in refusals:
        with pytest.raises(error, match=message):
            app.extend_workflow(run.id, steps, before)
    again = app.require_workflow(run.id)
    assert again.steps_total == 2 and [j.step for j in again.steps or []] == ["first", "second"]
    app.cancel_workflow(run.id)
    with pytest.raises(InvalidStateError, match="cancelled"):
        app.extend_workflow(run.id, [{"name": "x", "type": "fetch", "args": {"i": 1}}])


def _steps(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": "bad", "steps": list(steps)}


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        (_steps({"name": "a", "type": "fetch", "args": {"i": 1}, "after": ["b"]},
                {"name": "b", "type": "fetch", "args": {"i": 1}, "after": ["a"]}), InvalidArgumentsError, "cycle"),
        (_steps({"name": "a", "type": "fetch", "args": {"i": 1}, "after": ["a"]}), InvalidArgumentsError, "'a'"),
        (_steps({"name": "a", "type": "fetch", "args": {"i": 1}},
                {"name": "a", "type": "fetch", "args": {"i": 2}}), InvalidArgumentsError, "duplicate step name"),
        (_steps({"name": "a", "type": "fetch", "args": {"i": 1}, "after": ["ghost"]}), InvalidArgumentsError,
         "'ghost'"),
        (_steps({"name": "a", "type": "fetch", "args": {"i": 1}}, {"name": "b", "type": "nope"}), UnknownTaskError,
         "step 'b'"),
        (_steps({"name": "a", "type": "fetch", "args": {"i": "x"}}), InvalidArgumentsError, "step 'a'.*i"),
    ],
    ids=["cycle", "self", "duplicate", "unknown-step", "unknown-type", "bad-args"],
)
def test_a_bad_workflow_is_refused_naming_the_step_and_nothing_is_stored(
    tasks: Conveyor, spec: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        tasks.enqueue_workflow(spec)
    assert nothing_stored(tasks)


def test_the_builder_refuses_bad_steps_at_once(tasks: Conveyor) -> None:
    wf = tasks.workflow("b")
    with pytest.raises(InvalidArgumentsError, match="step"):
        wf.step("x" * 300, "fetch", i=1)
    with pytest.raises(InvalidArgumentsError, match="step 'a'"):
        wf.step("a", "fetch", i=1, options={"colour": "red"})
    wf.step("a", "fetch", i=1)
    wf.step("a", "fetch", i=2)
    with pytest.raises(InvalidArgumentsError, match="duplicate"):
        wf.enqueue()
    assert nothing_stored(tasks)
