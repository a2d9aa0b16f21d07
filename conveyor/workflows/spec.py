"""A workflow's definition and its validation, shared by the Python builder and `POST /workflows`: every step is
checked (unique name, known task, arguments by the task's type hints, `after` naming steps of this workflow, no
cycle) before anything is stored, and an error names the step."""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from conveyor.backends.params import NewJob, NewWorkflow
from conveyor.errors import InvalidArgumentsError, UnknownTaskError
from conveyor.ids import uuid7, uuid7_many
from conveyor.jsonsafe import check_json
from conveyor.options import MAX_NAME, EnqueueSpec, JobId, Name

if TYPE_CHECKING:
    from conveyor.app import Conveyor

MAX_STEPS = 100_000
StepName = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]


class StepSpec(EnqueueSpec):
    """One step: its unique `name`, the task `type` and `args`, the steps it runs `after`, and job options."""

    name: StepName
    after: list[StepName] = Field(default_factory=list, max_length=MAX_STEPS)
    # A step's parents are steps (`after`), and a workflow's steps are not deduplicated: these two job options are
    # refused by `build`, naming the step, so the schema does not offer them.
    depends_on: SkipJsonSchema[list[JobId] | None] = None
    unique_key: SkipJsonSchema[Name | None] = None

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class WorkflowSpec(BaseModel):
    """A workflow to enqueue: `POST /workflows`' body, and what `app.workflow(...)` builds."""

    model_config = ConfigDict(extra="forbid")

    name: StepName
    metadata: dict[str, Any] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(min_length=1, max_length=MAX_STEPS)

    @field_validator("metadata")
    @classmethod
    def _json(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json(value, "metadata")
        return value


def _order(steps: Sequence[StepSpec], existing: Mapping[str, str] | None = None) -> None:
    """Refuse duplicate names, `after` naming no step of this workflow, and cycles (self-dependencies included)."""
    names: set[str] = set()
    for step in steps:
        if step.name in names or step.name in (existing or {}):
            raise InvalidArgumentsError(f"step {step.name!r}: duplicate step name")
        names.add(step.name)
    graph: dict[str, list[str]] = {}
    for step in steps:
        for parent in step.after:
            if parent in (existing or {}):
                continue
            if parent not in names:
                raise InvalidArgumentsError(f"step {step.name!r}: after names no step of this workflow: {parent!r}")
            if parent == step.name:
                raise InvalidArgumentsError(f"step {step.name!r}: a step cannot run after itself")
        graph[step.name] = [p for p in step.after if p in names]
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        cycle = list(exc.args[1])
        raise InvalidArgumentsError(
            f"step {cycle[0]!r}: the steps form a cycle: {' -> '.join(reversed(cycle))}"
        ) from None


def build(app: Conveyor, spec: WorkflowSpec, now: float) -> tuple[NewWorkflow, list[NewJob]]:
    """The workflow and its jobs, ready to insert in one transaction; refused with an error naming the step."""
    _order(spec.steps)
    workflow = NewWorkflow(uuid7(), spec.name, spec.metadata)
    return workflow, _jobs(app, workflow.id, spec.steps, {}, now)


def build_steps(
    app: Conveyor, workflow_id: str, steps: Sequence[StepSpec], existing: Mapping[str, str], now: float
) -> list[NewJob]:
    """New steps of a stored workflow: `after` may also name its `existing` steps (name -> job id), which cannot
    depend on new ones, so a cycle can only be among the new steps."""
    _order(steps, existing)
    return _jobs(app, workflow_id, steps, existing, now)


def _jobs(
    app: Conveyor, workflow_id: str, steps: Sequence[StepSpec], existing: Mapping[str, str], now: float
) -> list[NewJob]:
    ids = {**existing, **dict(zip((s.name for s in steps), uuid7_many(len(steps)), strict=True))}
    jobs: list[NewJob] = []
    for step in steps:
        where = f"step {step.name!r}"
        given = {"depends_on": bool(step.depends_on), "unique_key": step.unique_key is not None}
        refused = [option for option, is_given in given.items() if is_given]
        if refused:
            raise InvalidArgumentsError(f"{where}: a step takes `after` (step names), not {' or '.join(refused)}")
        try:
            task = app.get_task(step.type)
            payload = task.validate(step.args)
            template = step.resolve(task, app.settings, now)
            job = task.keyed(NewJob(ids[step.name], template.type, template.queue, template.priority, payload,
                                    template.max_retries, template.timeout, template.run_at, template.tags,
                                    template.metadata, None, template.scheduled, template.group_key,
                                    tuple(ids[p] for p in dict.fromkeys(step.after)), workflow_id, step.name,
                                    template.webhook_url))
        except UnknownTaskError as exc:
            raise UnknownTaskError(exc.task_type, exc.known, where=where) from None
        except InvalidArgumentsError as exc:
            raise InvalidArgumentsError(f"{where}: {exc.message}", errors=exc.errors) from None
        jobs.append(job)
    return jobs
