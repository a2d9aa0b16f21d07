"""10,000 jobs through two real worker processes, each job's side effect recorded: none lost, none run twice."""

from __future__ import annotations

from collections import Counter

import pytest

from conveyor import Conveyor
from tests.acceptance.conftest import StartWorker
from tests.acceptance.tasks import read_notes

JOBS = 10_000


@pytest.mark.slow
def test_ten_thousand_jobs_through_two_processes(acc_app: Conveyor, start_worker: StartWorker, log: str) -> None:
    ids: list[str] = []
    for start in range(0, JOBS, 1000):
        batch = acc_app.enqueue_many("effect", [{"log": log, "i": i} for i in range(start, start + 1000)])
        ids.extend(j.id for j in batch)
    assert len(set(ids)) == JOBS

    supervisor = start_worker("--processes", "2", "--concurrency", "20", "--burst")
    assert supervisor.wait(120) == 0, supervisor.output()[-4000:]

    notes = read_notes(log)
    assert all(len(words) == 2 for words in notes)  # no torn or interleaved lines
    effects = Counter(int(words[0]) for words in notes)
    assert set(effects) == set(range(JOBS)), f"lost: {sorted(set(range(JOBS)) - set(effects))[:10]}"
    twice = [i for i, n in effects.items() if n > 1]
    assert not twice, f"run more than once: {twice[:10]}"
    assert Counter(words[1] for words in notes) == Counter(ids)  # each job's own side effect

    stats = acc_app.stats()
    assert stats.counts["completed"] == JOBS
    assert sum(stats.counts.values()) == JOBS
    workers: set[str | None] = set()
    cursor = None
    while True:
        page = acc_app.list_jobs(limit=1000, cursor=cursor)
        workers |= {j.worker_id for j in page.jobs}
        if (cursor := page.next_cursor) is None:
            break
    assert len(workers) == 2, f"expected both worker processes to share the work, got {workers}"
    for job_id in ids[:: JOBS // 50]:
        assert acc_app.require_job(job_id).attempts == 1
