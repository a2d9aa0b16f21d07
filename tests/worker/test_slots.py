"""The slots' arithmetic: how many jobs a claim asks for, and the jobs held ahead of a free slot."""

from __future__ import annotations

from typing import Any

from conveyor.backends.base import ClaimedJob, Lease
from conveyor.worker.slots import CLAIM_AHEAD_BELOW_S, CLAIM_AHEAD_MAX_PER_SLOT, HOLD_AHEAD_S, Slots


def claimed(job_id: str, priority: int = 0) -> ClaimedJob:
    return ClaimedJob(job_id, "t", "default", priority, {}, 1, 0, 3, None, Lease("w", 1))


def test_a_claim_asks_for_the_free_slots_and_ahead_only_while_jobs_are_short() -> None:
    busy = [0]
    slots = Slots(4, lambda: busy[0])
    running: Any = object()
    slots.running["a"] = running
    busy[0] = 1  # an abandoned attempt's thread holds a slot
    assert slots.free() == 2 and slots.wanted() == 2  # no job ended yet: nothing ahead
    slots.ran(CLAIM_AHEAD_BELOW_S * 10)
    assert slots.wanted() == 2  # slow jobs: nothing ahead either
    for _ in range(40):
        slots.ran(CLAIM_AHEAD_BELOW_S / 10)  # the moving average comes down
    assert slots.mean_run_s < CLAIM_AHEAD_BELOW_S
    assert slots.wanted() == 2 + CLAIM_AHEAD_MAX_PER_SLOT * 4
    slots.hold(claimed("h1"))
    assert slots.wanted() == 1 + CLAIM_AHEAD_MAX_PER_SLOT * 4  # what is held counts


def test_jobs_held_ahead_are_about_hold_ahead_s_of_each_slots_work() -> None:
    slots = Slots(10, lambda: 0)
    for mean, per_slot in ((CLAIM_AHEAD_BELOW_S, 0), (CLAIM_AHEAD_BELOW_S * 0.99, 2), (HOLD_AHEAD_S / 3, 3),
                           (HOLD_AHEAD_S / 4.5, 4), (0.001, CLAIM_AHEAD_MAX_PER_SLOT), (0.0, CLAIM_AHEAD_MAX_PER_SLOT)):
        slots.mean_run_s = mean
        assert slots.ahead_per_slot() == per_slot, mean
        assert slots.wanted() == 10 + 10 * per_slot


def test_held_jobs_go_best_first_and_leave_by_cancel_start_or_hand_back() -> None:
    slots = Slots(1, lambda: 0)
    slots.running["r"] = object()  # type: ignore[assignment]
    for job_id, priority in (("a", 0), ("b", 5), ("c", 0), ("d", 5)):
        slots.hold(claimed(job_id, priority))
    assert [j.id for j in slots.ahead] == ["b", "d", "a", "c"]  # by priority, then claim order
    assert slots.next_held() is None  # no free slot
    assert slots.holding() == ("r", "b", "d", "a", "c")
    assert [j.id for j in slots.take_held({"d", "x"})] == ["d"]
    del slots.running["r"]
    held = slots.next_held()
    assert held is not None and held.id == "b"
    assert [j.id for j in slots.hand_back()] == ["a", "c"] and slots.ahead == []
