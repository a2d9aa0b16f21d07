"""Conveyor: a durable background job system for Python."""

from conveyor.app import Conveyor
from conveyor.context import Cancel, JobContext, Retry
from conveyor.errors import (
    BackendError,
    ConfigError,
    ConveyorError,
    InvalidArgumentsError,
    InvalidStateError,
    JobFailed,
    JobNotFoundError,
    UnknownTaskError,
)
from conveyor.job import Job, JobEvent, JobStatus, QueueInfo, WorkerInfo
from conveyor.settings import Settings
from conveyor.task import Task

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "Cancel",
    "ConfigError",
    "Conveyor",
    "ConveyorError",
    "InvalidArgumentsError",
    "InvalidStateError",
    "Job",
    "JobContext",
    "JobEvent",
    "JobFailed",
    "JobNotFoundError",
    "JobStatus",
    "QueueInfo",
    "Retry",
    "Settings",
    "Task",
    "UnknownTaskError",
    "WorkerInfo",
    "__version__",
]
