"""Which jobs a worker holds: those running in its slots, and those it claimed ahead of a free slot.

Claiming ahead: while the jobs a worker runs take less than CLAIM_AHEAD_BELOW_S on average (a moving average), it
claims jobs beyond its free slots, holds them best first, and starts one the moment a slot frees: per slot as many as
run in HOLD_AHEAD_S at the average run time, at most CLAIM_AHEAD_MAX_PER_SLOT. Such jobs end many times per database
round trip: a cycle then carries more outcomes and claims (its fixed cost shared by more jobs), and a slot does not
wait for the database between two jobs. Slower jobs are never claimed ahead, so a worker does not sit on work another
worker could start; what it holds is about HOLD_AHEAD_S of each slot's work, and it hands it back unstarted when it
stops. (At the threshold that is 2 jobs a slot; 5 a slot, for jobs of 20 ms or less, made a PostgreSQL worker cycle
carry about twice the jobs: bench/run.py --workers 2, 7.7-9.4k -> 11.3-12.4k no-op jobs/s.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.backends.base import ClaimedJob
    from conveyor.worker.executor import Running

CLAIM_AHEAD_BELOW_S = 0.05
HOLD_AHEAD_S = 0.1
CLAIM_AHEAD_MAX_PER_SLOT = 5
RUN_TIME_WEIGHT = 0.2  # weight of the newest job in the moving average of run times


class Slots:
    """`running`: the jobs in slots, by id; `ahead`: the jobs claimed ahead, best first. `busy()` counts the slots
    still held by a thread busy with an abandoned (timed-out, cancelled) sync attempt."""

    def __init__(self, concurrency: int, busy: Callable[[], int]) -> None:
        self.concurrency = concurrency
        self.running: dict[str, Running] = {}
        self.ahead: list[ClaimedJob] = []
        self.mean_run_s = math.inf  # moving average of how long jobs ran; inf until one ended
        self._busy = busy

    def free(self) -> int:
        """Slots neither running a job nor held by an abandoned attempt's thread."""
        return self.concurrency - len(self.running) - self._busy()

    def wanted(self) -> int:
        """How many jobs the next claim asks for: the free slots, plus, while jobs are short, `ahead_per_slot` per
        slot ahead, less what is already held."""
        return max(0, self.free() + self.ahead_per_slot() * self.concurrency - len(self.ahead))

    def ahead_per_slot(self) -> int:
        """Jobs to hold ahead per slot: none while jobs take CLAIM_AHEAD_BELOW_S or more on average, else as many
        as run in HOLD_AHEAD_S (2 at the threshold), at most CLAIM_AHEAD_MAX_PER_SLOT."""
        mean = self.mean_run_s
        if mean >= CLAIM_AHEAD_BELOW_S:
            return 0
        return CLAIM_AHEAD_MAX_PER_SLOT if mean <= 0 else min(CLAIM_AHEAD_MAX_PER_SLOT, int(HOLD_AHEAD_S / mean))

    def hold(self, job: ClaimedJob) -> None:
        self.ahead.append(job)
        if len(self.ahead) > 1 and job.priority > self.ahead[-2].priority:
            self.ahead.sort(key=lambda j: -j.priority)  # stable: equal priorities keep their claim order

    def next_held(self) -> ClaimedJob | None:
        """The best job held ahead, taken, when a slot is free for it."""
        return self.ahead.pop(0) if self.ahead and self.free() > 0 else None

    def take_held(self, job_ids: Collection[str]) -> list[ClaimedJob]:
        """The held jobs among `job_ids`, taken (they are being cancelled before they started)."""
        taken = [job for job in self.ahead if job.id in job_ids]
        if taken:
            self.ahead = [job for job in self.ahead if job.id not in job_ids]
        return taken

    def hand_back(self) -> list[ClaimedJob]:
        """Every held job, taken (the worker stops)."""
        held, self.ahead = self.ahead, []
        return held

    def ran(self, seconds: float) -> None:
        """A job ran this long: the moving average that decides whether to claim ahead."""
        mean = self.mean_run_s
        self.mean_run_s = seconds if mean == math.inf else mean + RUN_TIME_WEIGHT * (seconds - mean)

    def holding(self) -> tuple[str, ...]:
        return (*self.running, *(job.id for job in self.ahead))
