"""`app.workflow(name)`: build a graph of steps in Python, then enqueue it in one transaction.

    wf = app.workflow("report", metadata={"project": 42})
    pages = [wf.step(f"fetch-{i}", fetch_page, url=u) for i, u in enumerate(urls)]     # fan-out
    summary = wf.step("summarize", summarize, after=pages)                            # fan-in
    wf.step("notify", notify, after=[summary], options={"queue": "mail", "max_retries": 5})
    run = wf.enqueue()

A step's keyword arguments are its task's arguments; its job options (`queue`, `priority`, `max_retries`,
`timeout`, `delay` or `run_at`, `tags`, `metadata`) go in `options=`, so that a task argument may be called `queue`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from conveyor.errors import InvalidArgumentsError
from conveyor.options import JobOptions, options_error
from conveyor.task import Task
from conveyor.workflows.spec import StepSpec, WorkflowSpec

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.workflows.model import Workflow


@dataclass(frozen=True, slots=True)
class Step:
    """A step added to a builder: pass it (or its name) in another step's `after`."""

    name: str


class WorkflowBuilder:
    def __init__(self, app: Conveyor, name: str, metadata: Mapping[str, Any] | None = None) -> None:
        self.app = app
        self.name = name
        self.metadata = dict(metadata or {})
        self._steps: list[StepSpec] = []

    def step(
        self,
        name: str,
        task: Task | str,
        *,
        after: Iterable[Step | str] = (),
        options: JobOptions | Mapping[str, Any] | None = None,
        **args: Any,
    ) -> Step:
        """Add a step running `task` with `args` once every step of `after` completed."""
        chosen = options.given() if isinstance(options, JobOptions) else dict(options or {})
        parents = [p.name if isinstance(p, Step) else p for p in after]
        task_type = task.name if isinstance(task, Task) else task
        try:
            spec = StepSpec(name=name, type=task_type, args=args, after=parents, **chosen)
        except ValidationError as exc:
            raise InvalidArgumentsError(f"step {name!r}: {options_error(exc)}") from None
        self._steps.append(spec)
        return Step(name)

    def enqueue(self) -> Workflow:
        """Validate every step, then store the workflow and its jobs in one transaction; returns it with its steps."""
        try:
            spec = WorkflowSpec(name=self.name, metadata=self.metadata, steps=self._steps)
        except ValidationError as exc:
            raise InvalidArgumentsError(options_error(exc)) from None
        return self.app.enqueue_workflow(spec)
