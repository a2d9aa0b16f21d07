"""The workflow methods of the `Conveyor` facade (a mixin, so the facade stays one screen of job methods)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from pydantic import ValidationError

from conveyor.errors import InvalidArgumentsError, WorkflowNotFoundError
from conveyor.options import options_error
from conveyor.workflows.builder import WorkflowBuilder
from conveyor.workflows.model import Workflow, WorkflowStatus
from conveyor.workflows.spec import StepSpec, WorkflowSpec, build, build_steps

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.job import Job


class WorkflowMethods:
    """Mixed into `Conveyor` (only it): `_app` is the facade itself."""

    @property
    def _app(self) -> Conveyor:
        return cast("Conveyor", self)

    def workflow(self, name: str, metadata: Mapping[str, Any] | None = None) -> WorkflowBuilder:
        """A builder of a workflow named `name`: add steps with `.step(...)`, then `.enqueue()`."""
        return WorkflowBuilder(self._app, name, metadata)

    def enqueue_workflow(self, spec: WorkflowSpec | Mapping[str, Any]) -> Workflow:
        """Validate and store a workflow (`WorkflowSpec`, or a dict of the shape of `POST /workflows`) in one
        transaction: a cycle, a duplicate or unknown step name, an unknown type or bad arguments store nothing."""
        checked = spec if isinstance(spec, WorkflowSpec) else WorkflowSpec.model_validate(dict(spec))
        app = self._app
        now = app.clock()
        workflow, jobs = build(app, checked, now)
        steps = app.backend.insert_graph(jobs, now, workflow=workflow)
        at = datetime.fromtimestamp(now, UTC)
        return Workflow(workflow.id, workflow.name, WorkflowStatus.RUNNING, workflow.metadata, len(steps), 0, at, at,
                        None, steps)

    def extend_workflow(
        self, workflow_id: str, steps: Sequence[StepSpec | Mapping[str, Any]], before: Sequence[str] = ()
    ) -> list[Job]:
        """Add steps to a running workflow in one transaction and return their jobs. A new step's `after` names new
        steps or existing ones that are ready, running or completed; each step named in `before` must still be
        waiting, and then also waits for every new step (a fan-in that grows). Steps whose names the workflow
        already has are left as they are, so a step that adds steps and is run again adds nothing twice."""
        try:
            specs = [s if isinstance(s, StepSpec) else StepSpec.model_validate(dict(s)) for s in steps]
        except ValidationError as exc:
            raise InvalidArgumentsError(options_error(exc)) from None
        app = self._app
        names = {s.name for s in specs} | {p for s in specs for p in s.after}
        existing = app.backend.workflow_step_ids(str(workflow_id), sorted(names))
        new = [s for s in specs if s.name not in existing]
        if not new:
            return []
        now = app.clock()
        jobs = build_steps(app, str(workflow_id), new, existing, now)
        return app.backend.extend_workflow(str(workflow_id), jobs, list(dict.fromkeys(before)), now)

    def get_workflow(self, workflow_id: str) -> Workflow | None:
        """The workflow with its steps' jobs, or None."""
        found = self._app.backend.get_workflow(str(workflow_id))
        return None if found is None else Workflow.of(*found)

    def get_workflow_step(self, workflow_id: str, step: str) -> Job | None:
        """The job of one step of a workflow (without reading the others), or None."""
        found = self._app.backend.workflow_step_ids(str(workflow_id), [step])
        return self._app.get_job(found[step]) if step in found else None

    def require_workflow(self, workflow_id: str) -> Workflow:
        workflow = self.get_workflow(workflow_id)
        if workflow is None:
            raise WorkflowNotFoundError(workflow_id)
        return workflow

    def list_workflows(
        self,
        status: Sequence[WorkflowStatus | str] | WorkflowStatus | str | None = None,
        name: str | None = None,
        limit: int = 50,
    ) -> list[Workflow]:
        """Workflows newest first (without their steps), filtered by status and name."""
        statuses = [status] if isinstance(status, str) else list(status or [])
        rows = self._app.backend.list_workflows([WorkflowStatus(s).value for s in statuses] or None, name,
                                           max(1, min(int(limit), 1000)))
        return [Workflow.of(r) for r in rows]

    def wait_workflow(
        self, workflow_id: str, timeout: float | None = None, poll_interval: float = 0.5
    ) -> Workflow:
        """Block until the workflow ends and return it (whatever its end: check `status`); `TimeoutError` when
        `timeout` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            workflow = self.require_workflow(workflow_id)
            if workflow.is_terminal:
                return workflow
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"workflow {workflow_id} is still {workflow.status} after {timeout}s")
            pause = poll_interval if deadline is None else min(poll_interval, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)

    def cancel_workflow(self, workflow_id: str) -> Workflow:
        """Cancel every unfinished step (running ones by request); the workflow ends `cancelled`."""
        self._app.backend.cancel_workflow(workflow_id, self._app.clock())
        return self.require_workflow(workflow_id)

    def retry_workflow(self, workflow_id: str) -> Workflow:
        """Retry the failed and cancelled steps; the workflow runs again."""
        self._app.backend.retry_workflow(workflow_id, self._app.clock())
        return self.require_workflow(workflow_id)
