"""Job dependencies (`depends_on`) on both backends: release in order, results passed along, failure cascades,
retry re-waits, unknown parents refused with nothing stored."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import Conveyor, InvalidArgumentsError, JobContext, JobStatus

UNKNOWN = "01900000-0000-7000-8000-000000000000"


@pytest.fixture
def tasks(app: Conveyor) -> Conveyor:
    @app.task(max_retries=0)
    def add(ctx: JobContext, x: int) -> int:
        return x + sum(v for v in ctx.parent_results.values() if isinstance(v, int))

    @app.task(max_retries=0)
    def boom(ctx: JobContext) -> None:
        raise RuntimeError("boom")

    @app.task
    def order(ctx: JobContext, name: str) -> dict[str, Any]:
        return {"name": name, "parents": ctx.parent_results}

    return app


def statuses(app: Conveyor, *ids: str) -> list[JobStatus]:
    return [app.require_job(i).status for i in ids]


def test_a_dependent_job_waits_then_runs_after_its_parent(tasks: Conveyor) -> None:
    app = tasks
    parent = app.enqueue("add", {"x": 1})
    child = app.enqueue("add", {"x": 10}, depends_on=[parent.id])
    assert child.status is JobStatus.WAITING and child.depends_on == [parent.id]
    stored = app.require_job(child.id)
    assert stored.status is JobStatus.WAITING and stored.depends_on == [parent.id]
    assert [j.id for j in app.list_jobs(status=["waiting"]).jobs] == [child.id]
    assert app.stats().counts["waiting"] == 1

    app.run_worker(concurrency=2, burst=True)

    done = app.require_job(child.id)
    assert done.status is JobStatus.COMPLETED
    assert done.result == 11  # 10 + the parent's result, by parent id
    first = app.require_job(parent.id)
    assert first.completed_at is not None and done.started_at is not None
    assert done.started_at >= first.completed_at
    moves = [(e.from_status, e.to_status) for e in app.job_events(child.id)]
    assert moves[:2] == [(None, JobStatus.WAITING), (JobStatus.WAITING, JobStatus.PENDING)]


def test_a_chain_releases_in_order_and_a_fan_in_gets_every_result(tasks: Conveyor) -> None:
    app = tasks
    a = app.enqueue("order", {"name": "a"})
    b = app.enqueue("order", {"name": "b"}, depends_on=[a.id])
    c = app.enqueue("order", {"name": "c"}, depends_on=[b.id])
    fan = app.enqueue_many("add", [{"x": i} for i in range(5)], depends_on=[c.id])
    join = app.enqueue("order", {"name": "join"}, depends_on=[j.id for j in fan])
    assert statuses(app, b.id, c.id, join.id) == [JobStatus.WAITING] * 3

    app.run_worker(concurrency=4, burst=True)

    jobs = {j.id: app.require_job(j.id) for j in [a, b, c, *fan, join]}
    assert all(j.status is JobStatus.COMPLETED for j in jobs.values())
    starts = [jobs[x.id].started_at for x in (a, b, c)]
    assert starts == sorted(starts)
    assert jobs[b.id].result["parents"] == {a.id: {"name": "a", "parents": {}}}
    assert jobs[join.id].result["parents"] == {j.id: i for i, j in enumerate(fan)}
    assert all(jobs[f.id].started_at >= jobs[c.id].completed_at for f in fan)  # type: ignore[operator]


def test_a_failed_parent_cancels_its_dependents_transitively_and_a_retry_makes_them_wait(tasks: Conveyor) -> None:
    app = tasks
    bad = app.enqueue("boom", {})
    ok = app.enqueue("add", {"x": 1})
    child = app.enqueue("add", {"x": 1}, depends_on=[bad.id])
    grandchild = app.enqueue("add", {"x": 1}, depends_on=[child.id, ok.id])
    other = app.enqueue("add", {"x": 1}, depends_on=[ok.id])

    app.run_worker(concurrency=2, burst=True)

    assert statuses(app, bad.id, child.id, grandchild.id, other.id) == [
        JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.CANCELLED, JobStatus.COMPLETED]
    for job_id in (child.id, grandchild.id):
        job = app.require_job(job_id)
        assert job.error is not None and bad.id in job.error and "failed" in job.error
        assert job.completed_at is not None
    late = app.enqueue("add", {"x": 1}, depends_on=[bad.id])  # a parent that already failed
    assert late.status is JobStatus.CANCELLED and bad.id in (app.require_job(late.id).error or "")

    app.retry(bad.id)
    assert statuses(app, bad.id, child.id, grandchild.id, late.id) == [
        JobStatus.PENDING, JobStatus.WAITING, JobStatus.WAITING, JobStatus.WAITING]
    assert app.require_job(child.id).error is None
    moves = [(e.from_status, e.to_status) for e in app.job_events(child.id)]
    assert moves[-1] == (JobStatus.CANCELLED, JobStatus.WAITING)

    app.cancel(bad.id)  # a cancelled parent cascades as a failed one does
    assert statuses(app, child.id, grandchild.id) == [JobStatus.CANCELLED, JobStatus.CANCELLED]
    assert "cancelled" in (app.require_job(grandchild.id).error or "")


def test_a_retried_parent_that_then_completes_releases_its_dependents(tasks: Conveyor) -> None:
    app = tasks
    flaky = app.enqueue("demo.fail", {"times": 1}, max_retries=0)
    child = app.enqueue("add", {"x": 1}, depends_on=[flaky.id])
    app.run_worker(concurrency=2, burst=True)
    assert statuses(app, flaky.id, child.id) == [JobStatus.FAILED, JobStatus.CANCELLED]
    app.retry(flaky.id)
    app.run_worker(concurrency=2, burst=True)
    assert statuses(app, flaky.id, child.id) == [JobStatus.COMPLETED, JobStatus.COMPLETED]


def test_cancelling_a_waiting_job_cascades(tasks: Conveyor) -> None:
    app = tasks
    parent = app.enqueue("add", {"x": 1}, delay=3600)
    child = app.enqueue("add", {"x": 1}, depends_on=[parent.id])
    grandchild = app.enqueue("add", {"x": 1}, depends_on=[child.id])
    assert app.cancel(child.id).status is JobStatus.CANCELLED
    assert app.require_job(grandchild.id).status is JobStatus.CANCELLED
    assert child.id in (app.require_job(grandchild.id).error or "")
    assert app.require_job(parent.id).status is JobStatus.SCHEDULED


def test_a_released_child_with_a_later_run_at_is_scheduled(tasks: Conveyor) -> None:
    app = tasks
    parent = app.enqueue("add", {"x": 1})
    child = app.enqueue("add", {"x": 1}, depends_on=[parent.id], delay=3600)
    app.run_worker(concurrency=1, burst=True)
    assert statuses(app, parent.id, child.id) == [JobStatus.COMPLETED, JobStatus.SCHEDULED]


@pytest.mark.parametrize(
    ("depends_on", "message"),
    [([UNKNOWN], UNKNOWN), (["not-a-uuid"], "depends_on"), ([UNKNOWN] * 10_001, "depends_on")],
)
def test_an_unknown_parent_is_refused_and_nothing_is_stored(
    tasks: Conveyor, depends_on: list[str], message: str
) -> None:
    app = tasks
    parent = app.enqueue("add", {"x": 1})
    with pytest.raises(InvalidArgumentsError, match=message):
        app.enqueue("add", {"x": 1}, depends_on=[parent.id, *depends_on])
    with pytest.raises(InvalidArgumentsError, match=message):
        app.enqueue_many("add", [{"x": 1}, {"x": 2}], depends_on=[*depends_on, parent.id])
    with pytest.raises(InvalidArgumentsError, match=message):
        app.enqueue_batch([{"type": "add", "args": {"x": 1}}, {"type": "add", "args": {"x": 1},
                                                               "depends_on": depends_on}])
    assert [j.id for j in app.list_jobs().jobs] == [parent.id]
    assert not app.require_job(parent.id).depends_on


def test_depends_on_with_a_unique_key_is_refused(tasks: Conveyor) -> None:
    parent = tasks.enqueue("add", {"x": 1})
    with pytest.raises(InvalidArgumentsError, match="unique_key"):
        tasks.enqueue("add", {"x": 1}, depends_on=[parent.id], unique_key="k")


def test_the_sql_api_enqueues_cancels_and_retries_with_dependencies(pg_url: str) -> None:
    import psycopg

    app = Conveyor(pg_url)
    parent = app.enqueue("demo.fail", {"times": -1}, max_retries=0)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        child = conn.execute("SELECT conveyor.enqueue('demo.echo', depends_on => ARRAY[%s]::uuid[])",
                             (parent.id,)).fetchone()[0]
        row = conn.execute("SELECT status, depends_on FROM conveyor.jobs WHERE id = %s", (child,)).fetchone()
        assert (row[0], [str(p) for p in row[1]]) == ("waiting", [parent.id])
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="no job has the id"):
            conn.execute("SELECT conveyor.enqueue('demo.echo', depends_on => ARRAY[%s]::uuid[])", (UNKNOWN,))
        app.run_worker(concurrency=1, burst=True)
        assert app.require_job(str(child)).status is JobStatus.CANCELLED
        assert conn.execute("SELECT conveyor.retry(%s)", (child,)).fetchone()[0] == "waiting"
        assert conn.execute("SELECT conveyor.cancel(%s)", (child,)).fetchone()[0] == "cancelled"
        late = conn.execute("SELECT conveyor.enqueue('demo.echo', depends_on => ARRAY[%s]::uuid[])",
                            (parent.id,)).fetchone()[0]
        assert conn.execute("SELECT status FROM conveyor.jobs WHERE id = %s", (late,)).fetchone()[0] == "cancelled"
    assert [j.id for j in app.list_jobs().jobs if j.depends_on] == [str(late), str(child)]
    app.close()


def test_a_parent_is_not_deleted_while_children_wait_nor_purged_while_they_need_it(tasks: Conveyor) -> None:
    from conveyor import InvalidStateError

    app = tasks
    parent = app.enqueue("add", {"x": 1}, delay=3600)
    child = app.enqueue("add", {"x": 1}, depends_on=[parent.id], delay=3600)
    with pytest.raises(InvalidStateError):
        app.delete(parent.id)
    app.cancel(child.id)
    app.delete(parent.id)  # nobody waits for it any more
    assert app.get_job(parent.id) is None

    done = app.enqueue("add", {"x": 1})
    app.run_worker(concurrency=1, burst=True)
    later = app.enqueue("add", {"x": 1}, depends_on=[done.id], delay=3600)  # released, scheduled: not ended yet
    assert app.require_job(later.id).status is JobStatus.SCHEDULED
    assert app.purge(older_than_s=0) == 1  # the cancelled child; the completed parent is still needed
    assert app.get_job(done.id) is not None
    app.cancel(later.id)
    assert app.purge(older_than_s=0) == 2


def test_retrying_one_of_two_failed_parents_leaves_the_child_cancelled_by_the_other(tasks: Conveyor) -> None:
    app = tasks
    first = app.enqueue("boom", {})
    second = app.enqueue("boom", {})
    child = app.enqueue("add", {"x": 1}, depends_on=[first.id, second.id])
    grandchild = app.enqueue("add", {"x": 1}, depends_on=[child.id])
    app.run_worker(concurrency=2, burst=True)
    assert statuses(app, child.id, grandchild.id) == [JobStatus.CANCELLED, JobStatus.CANCELLED]
    blocker = first.id if first.id in (app.require_job(child.id).error or "") else second.id
    other = second.id if blocker == first.id else first.id

    app.retry(blocker)  # the other parent is still failed: the child and its own child stay cancelled, by it
    assert statuses(app, child.id, grandchild.id) == [JobStatus.CANCELLED, JobStatus.CANCELLED]
    assert other in (app.require_job(child.id).error or "")
    assert other in (app.require_job(grandchild.id).error or "")

    app.retry(other)  # now both wait again
    assert statuses(app, child.id, grandchild.id) == [JobStatus.WAITING, JobStatus.WAITING]


def test_a_keyed_child_is_claimed_through_its_group_once_released(tasks: Conveyor) -> None:
    app = tasks
    parent = app.enqueue("add", {"x": 1}, group_key="tenant:1")
    child = app.enqueue("add", {"x": 1}, depends_on=[parent.id], group_key="tenant:1")
    assert app.require_job(child.id).group_key == "tenant:1"
    app.run_worker(concurrency=2, burst=True)
    assert statuses(app, parent.id, child.id) == [JobStatus.COMPLETED, JobStatus.COMPLETED]
    wf = app.workflow("keyed")
    first = wf.step("first", "add", x=1, options={"group_key": "tenant:2"})
    wf.step("second", "add", x=2, after=[first], options={"group_key": "tenant:2"})
    run = wf.enqueue()
    app.run_worker(concurrency=2, burst=True)
    done = app.require_workflow(run.id)
    assert done.status == "completed" and done.step("second").group_key == "tenant:2"


def test_parents_completed_in_one_statement_release_their_child_once(pg_url: str) -> None:
    """PostgreSQL settles a statement's rows together (a worker cycle completes its batch in one statement): the
    fan-in step's counter drops by the parents the statement completed, the workflow's counters by its sum, and the
    child is released once, with one history row, when the last of them is done."""
    import psycopg

    app = Conveyor(pg_url)
    try:
        wf = app.workflow("batched")
        parents = [wf.step(f"p{i}", "demo.echo", i=i) for i in range(6)]
        wf.step("join", "demo.echo", after=parents)
        run = wf.enqueue()
        ids = [run.step(f"p{i}").id for i in range(6)]
        join = run.step("join").id
        complete = ("UPDATE conveyor_jobs SET status = 'completed', completed_at = extract(epoch FROM now()), "
                    "updated_at = extract(epoch FROM now()) WHERE id = ANY(%s::uuid[])")
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(complete, (ids[:4],))
            row = conn.execute("SELECT status, deps_remaining FROM conveyor_jobs WHERE id = %s", (join,)).fetchone()
            assert row == ("waiting", 2)
            assert app.require_workflow(run.id).steps_done == 4
            conn.execute(complete, (ids[4:],))
            row = conn.execute("SELECT status, deps_remaining FROM conveyor_jobs WHERE id = %s", (join,)).fetchone()
            assert row == ("pending", 0)
        moves = [(e.from_status, e.to_status) for e in app.job_events(join)]
        assert moves == [(None, JobStatus.WAITING), (JobStatus.WAITING, JobStatus.PENDING)]
        assert app.require_workflow(run.id).steps_done == 6
        app.run_worker(concurrency=1, burst=True)
        done = app.wait_workflow(run.id, timeout=10)
        assert done.status.value == "completed" and done.steps_done == 7
    finally:
        app.close()
