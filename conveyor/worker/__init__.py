"""The worker runtime."""

from conveyor.worker.runtime import Worker

__all__ = ["Worker"]
