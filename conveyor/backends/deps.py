"""Job dependencies and workflows in the shared backend (SPEC section 7): inserting a graph of jobs, reading parents'
results, and the workflow rows. What happens when a parent ends (children released, cancelled or put back to wait) is
done by the database's own triggers (migration `workflows` of each dialect), so every writer does it in the statement
that ends the parent: the worker's batched completions, cancel, retry, SQL of other services.

Queries: `deps.sql` and `workflows.sql` of each dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from conveyor.backends.driver import Driver, Tx, dumps
from conveyor.backends.params import NewJob, NewWorkflow, WorkflowRow
from conveyor.backends.rows import is_uuid, job_from_row, workflow_from_row
from conveyor.errors import ConfigError, InvalidArgumentsError, InvalidStateError, WorkflowNotFoundError
from conveyor.job import Job, JobStatus

FAILED = ("failed", "cancelled")
READY_OR_DONE = ("scheduled", "pending", "processing", "completed")  # its own parents all completed


def _parent_name(job_id: str, step: str | None) -> str:
    return f"parent step {step!r} (job {job_id})" if step is not None else f"parent job {job_id}"


def _as_job(job: NewJob, now: datetime, status: JobStatus, error: str | None) -> Job:
    """The job as inserted (no read back: a workflow of 10,000 steps is returned as it was written). Positional, in
    Job's field order, as `NewJob.as_job` (whose keywords would cost a big workflow a tenth of a second)."""
    run_at = datetime.fromtimestamp(job.run_at, UTC) if job.scheduled else now
    return Job(
        job.id, job.type, job.queue, status, job.priority, job.args, None, error, None, 0, None,
        0, job.max_retries, job.timeout, run_at, job.tags, job.metadata, job.unique_key,
        now, now, None, now if status is JobStatus.CANCELLED else None, None, False, job.group_key,
        sorted(job.depends_on), job.workflow_id, job.step, job.webhook_url,
    )


class DependencyOps:
    """A mixin of SQLBackend: the operations of dependencies and workflows, over its driver."""

    driver: Driver

    def _decode(self, value: Any) -> Any:
        return self.driver.decode(value)

    def _insert(self, go: Callable[[Any], list[Job]], connection: Any) -> list[Job]:
        """Write in a transaction of ours (PostgreSQL also writes in the caller's: `connection=`)."""
        if connection is not None:
            raise ConfigError("connection= (transactional enqueue) needs the PostgreSQL backend")
        return self.driver.write(go)

    # ------------------------------------------------------------------------------------------ inserting
    def insert_graph(
        self, jobs: Sequence[NewJob], now: float, workflow: NewWorkflow | None = None, connection: Any = None
    ) -> list[Job]:
        """Insert jobs that depend on others (in the batch or already stored) and their edges, in one transaction.
        A job with a parent not completed yet starts `waiting`; one whose parent already failed or was cancelled
        starts `cancelled`, naming it (retrying that parent puts it back in `waiting`). An unknown parent refuses
        the whole batch."""
        ids = {j.id for j in jobs}
        outside = sorted({p for j in jobs for p in j.depends_on if p not in ids})
        bad = [p for p in outside if not is_uuid(p)]
        if bad:
            raise InvalidArgumentsError(f"depends_on: {bad[0]!r} is not a job id")
        parents_in_batch = {p for j in jobs for p in j.depends_on if p in ids}

        def go(tx: Tx) -> list[Job]:
            found: dict[str, tuple[str, str | None]] = {}
            if outside:
                for job_id, status, step in tx.rows("lock_parents", {"ids": self.driver.array(outside)}):
                    found[str(job_id)] = (status, step)
            missing = [p for p in outside if p not in found]
            if missing:
                where = next(i for i, j in enumerate(jobs) if missing[0] in j.depends_on)
                prefix = f"jobs[{where}]: " if len(jobs) > 1 else ""  # which job of a batch
                raise InvalidArgumentsError(f"{prefix}depends_on: no job has the id {missing[0]}")
            if workflow is not None:
                tx.execute("insert_workflow", {"id": workflow.id, "name": workflow.name,
                                               "metadata": dumps(workflow.metadata), "steps_total": len(jobs),
                                               "now": now})
            out = self._write_graph(tx, jobs, found, parents_in_batch, now)
            if outside:
                tx.execute("mark_parents", {"ids": self.driver.array(outside)})
            return out

        return self._insert(go, connection)

    def _write_graph(
        self, tx: Tx, jobs: Sequence[NewJob], found: dict[str, tuple[str, str | None]], dependents: set[str],
        now: float, extra_edges: Sequence[list[str]] = (),
    ) -> list[Job]:
        """Insert the jobs (their parents outside the batch read and locked in `found`) and their edges."""
        ids = {j.id for j in jobs}
        created_at = datetime.fromtimestamp(now, UTC)
        rows: list[list[Any]] = []
        edges: list[list[str]] = list(extra_edges)
        out: list[Job] = []
        for j in jobs:
            remaining = sum(1 for p in j.depends_on if p in ids or found[p][0] != "completed")
            dead = next((p for p in j.depends_on if p not in ids and found[p][0] in FAILED), None)
            if dead is not None:
                status, blocked = JobStatus.CANCELLED, dead
                why: str | None = f"{_parent_name(dead, found[dead][1])} {found[dead][0]}"
            elif remaining:
                status, blocked, why = JobStatus.WAITING, None, None
            else:
                status = JobStatus.SCHEDULED if j.scheduled else JobStatus.PENDING
                blocked = why = None
            rows.append([j.id, j.type, j.queue, status.value, j.priority, j.args, j.max_retries, j.timeout,
                         j.run_at, j.tags, j.metadata, remaining, j.id in dependents, blocked, why,
                         j.workflow_id, j.step, j.group_key, j.webhook_url])
            edges.extend([p, j.id] for p in j.depends_on)
            out.append(_as_job(j, created_at, status, why))
        if edges:  # before the jobs: the webhook rows their inserts write show their depends_on
            tx.execute("insert_deps", {"batch": dumps(edges)})
        tx.execute("insert_graph", {"batch": dumps(rows), "now": now})
        return out

    def extend_workflow(
        self, workflow_id: str, jobs: Sequence[NewJob], before: Sequence[str], now: float
    ) -> list[Job]:
        """Add steps to a running workflow in one transaction (SPEC section 7). A new step's parents outside the
        batch (its `depends_on`, by job id) must be steps of this workflow that are ready, running or completed (so
        no cycle can form); every step named in `before` must be waiting, and then waits for every new step too.
        A step name the workflow already has refuses the whole batch; so does a workflow that is not running or is
        being cancelled (InvalidStateError)."""
        if not is_uuid(workflow_id):
            raise WorkflowNotFoundError(workflow_id)
        ids = {j.id for j in jobs}
        outside = sorted({p for j in jobs for p in j.depends_on if p not in ids})
        names = [j.step for j in jobs if j.step is not None]
        by_id = {"id": workflow_id}

        def go(tx: Tx) -> list[Job]:
            state = tx.rows("workflow_state", by_id)
            if not state:
                raise WorkflowNotFoundError(workflow_id)
            status, cancelled = state[0]
            if status != "running" or cancelled:
                raise InvalidStateError(f"workflow {workflow_id} is {'being cancelled' if cancelled else status}: "
                                        "only a running workflow can grow")
            taken = [str(r[0]) for r in tx.rows("workflow_steps_named", {**by_id, "names": self.driver.array(names)})]
            if taken:
                raise InvalidStateError(f"step {taken[0]!r}: the workflow has a step of that name")
            found: dict[str, tuple[str, str | None]] = {}
            if outside:  # parents first, then the steps that wait: the order in which a completion locks them
                for row in tx.rows("lock_parent_steps", {**by_id, "ids": self.driver.array(outside)}):
                    found[str(row[0])] = (str(row[1]), row[2])
            for parent in outside:
                if parent not in found:
                    raise InvalidArgumentsError(f"depends_on: no step of workflow {workflow_id} has the id {parent}")
                if found[parent][0] not in READY_OR_DONE:
                    raise InvalidStateError(f"step {found[parent][1]!r} is {found[parent][0]}: a new step can only "
                                            "follow a step that is ready, running or completed")
            waiting = tx.rows("lock_workflow_steps", {**by_id, "names": self.driver.array(list(before))})
            known = {str(r[0]): (str(r[1]), str(r[2])) for r in waiting}
            for name in before:
                if name not in known:
                    raise InvalidArgumentsError(f"before names no step of this workflow: {name!r}")
                if known[name][1] != "waiting":
                    raise InvalidStateError(f"step {name!r} is {known[name][1]}: only a waiting step can wait for "
                                            "new steps")
            children = sorted({known[name][0] for name in before})
            dependents = {p for j in jobs for p in j.depends_on if p in ids}
            if children:
                dependents |= ids
            out = self._write_graph(tx, jobs, found, dependents, now, [[j.id, c] for j in jobs for c in children])
            if outside:
                tx.execute("mark_parents", {"ids": self.driver.array(outside)})
            if children:
                tx.execute("add_parents", {"ids": self.driver.array(children), "count": len(jobs), "now": now})
            if tx.execute("grow_workflow", {**by_id, "count": len(jobs), "now": now}) != 1:
                raise InvalidStateError(f"workflow {workflow_id} ended or is being cancelled: it cannot grow")
            return out

        return self.driver.write(go)

    # ------------------------------------------------------------------------------------------ reading
    def parent_results(self, job_id: str) -> dict[str, Any]:
        """The results of a job's parents: by step name for a workflow's step (parents of its workflow), else by
        job id."""
        if not is_uuid(job_id):
            return {}
        rows = self.driver.read(lambda tx: tx.rows("parent_results", {"id": job_id}))
        out: dict[str, Any] = {}
        for parent_id, step, same_workflow, result in rows:
            out[step if step is not None and same_workflow else str(parent_id)] = self._decode(result)
        return out

    # ------------------------------------------------------------------------------------------ workflows
    def get_workflow(self, workflow_id: str) -> tuple[WorkflowRow, list[Job]] | None:
        if not is_uuid(workflow_id):
            return None

        def go(tx: Tx) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            return tx.dicts("get_workflow", {"id": workflow_id}), tx.dicts("workflow_steps", {"id": workflow_id})

        found, steps = self.driver.read(go)
        if not found:
            return None
        return workflow_from_row(found[0], self._decode), [job_from_row(r, self._decode) for r in steps]

    def list_workflows(
        self, status: Sequence[str] | None = None, name: str | None = None, limit: int = 50
    ) -> list[WorkflowRow]:
        params = {"statuses": self.driver.array(list(status)) if status else None, "name": name, "limit": limit}
        rows = self.driver.read(lambda tx: tx.dicts("list_workflows", params))
        return [workflow_from_row(r, self._decode) for r in rows]

    def workflow_step_ids(self, workflow_id: str, names: Sequence[str]) -> dict[str, str]:
        if not is_uuid(workflow_id):
            return {}
        params = {"id": workflow_id, "names": self.driver.array(list(names))}
        return {str(step): str(job_id) for step, job_id, _ in self.driver.read(
            lambda tx: tx.rows("workflow_steps_named", params))}

    def count_workflows(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in self.driver.read(lambda tx: tx.rows("count_workflows"))}

    def cancel_workflow(self, workflow_id: str, now: float) -> None:
        """Cancel every unfinished step: waiting and ready ones at once, running ones by request."""
        queries = ("cancel_workflow", "cancel_workflow_steps", "request_cancel_workflow_steps")
        self._steer_workflow(workflow_id, now, queries, "only a running workflow can be cancelled")

    def retry_workflow(self, workflow_id: str, now: float) -> None:
        """Retry the failed and cancelled steps (each waits again for its parents that are not completed)."""
        self._steer_workflow(workflow_id, now, ("reopen_workflow", "retry_workflow_steps"),
                             "only a failed or cancelled workflow can be retried")

    def _steer_workflow(self, workflow_id: str, now: float, queries: tuple[str, ...], allowed: str) -> None:
        if not is_uuid(workflow_id):
            raise WorkflowNotFoundError(workflow_id)
        params = {"id": workflow_id, "now": now}

        def go(tx: Tx) -> None:
            rows = tx.rows("workflow_status", params)
            if not rows:
                raise WorkflowNotFoundError(workflow_id)
            if tx.execute(queries[0], params) == 0:
                raise InvalidStateError(f"workflow {workflow_id} is {rows[0][0]}: {allowed}")
            for query in queries[1:]:
                tx.execute(query, params)

        self.driver.write(go)
