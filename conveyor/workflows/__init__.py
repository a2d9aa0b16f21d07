"""Workflows: named graphs of steps enqueued in one transaction (SPEC section 7). Dependencies between jobs are
stored and released by the backend (`conveyor/backends/deps.py` and the triggers of its migration)."""

from conveyor.workflows.builder import Step, WorkflowBuilder
from conveyor.workflows.methods import WorkflowMethods
from conveyor.workflows.model import Workflow, WorkflowStatus
from conveyor.workflows.spec import StepSpec, WorkflowSpec

__all__ = ["Step", "StepSpec", "Workflow", "WorkflowBuilder", "WorkflowMethods", "WorkflowSpec", "WorkflowStatus"]
