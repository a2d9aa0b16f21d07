"""A workflow as users see it: a named graph of steps (jobs) with its status and progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from conveyor.backends.params import WorkflowRow
from conveyor.job import Job, iso


class WorkflowStatus(StrEnum):
    RUNNING = "running"  # until every step is terminal
    COMPLETED = "completed"  # every step completed
    FAILED = "failed"  # a step failed or was cancelled (its dependents were cancelled with it)
    CANCELLED = "cancelled"  # cancelled as a whole

    @property
    def is_terminal(self) -> bool:
        return self is not WorkflowStatus.RUNNING


@dataclass(frozen=True, slots=True)
class Workflow:
    """One workflow. `steps` holds its jobs (each with `step` and `depends_on`) when it was read with them."""

    id: str
    name: str
    status: WorkflowStatus
    metadata: dict[str, Any]
    steps_total: int
    steps_done: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    steps: list[Job] | None = field(default=None)

    @classmethod
    def of(cls, row: WorkflowRow, steps: list[Job] | None = None) -> Workflow:
        return cls(row.id, row.name, WorkflowStatus(row.status), row.metadata, row.steps_total, row.steps_done,
                   row.created_at, row.updated_at, row.completed_at, steps)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def step(self, name: str) -> Job:
        """The job of the step of that name (the workflow must have been read with its steps)."""
        for job in self.steps or ():
            if job.step == name:
                return job
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The workflow as the JSON object of SPEC section 7 (`steps` only when read with them)."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "status": self.status.value,
            "metadata": self.metadata,
            "steps_total": self.steps_total,
            "steps_done": self.steps_done,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "completed_at": iso(self.completed_at),
        }
        if self.steps is not None:
            out["steps"] = [j.to_dict() for j in self.steps]
        return out
