"""`BlockingCalls`: blocking calls from async code, in threads, run to their end even when the caller is cancelled."""

from __future__ import annotations

import asyncio
import threading

import pytest

from conveyor.blocking import BlockingCalls


def test_calls_run_in_threads_of_their_own_with_arguments() -> None:
    calls = BlockingCalls("conveyor-test")

    def add(a: int, b: int = 0) -> int:
        return a + b

    async def main() -> tuple[str, int]:
        name = await calls.run(lambda: threading.current_thread().name)
        total = await calls.run(add, 2, b=3)
        return name, total

    try:
        name, total = asyncio.run(main())
    finally:
        calls.close()
    assert name.startswith("conveyor-test") and total == 5


def test_a_cancelled_caller_stops_waiting_but_the_call_runs_to_its_end() -> None:
    calls = BlockingCalls("conveyor-test")
    release, done = threading.Event(), threading.Event()

    def write() -> None:
        release.wait(10)
        done.set()

    async def main() -> None:
        first = asyncio.create_task(calls.run(release.wait, 10))  # holds the one thread
        queued = asyncio.create_task(calls.run(write))  # waits behind it
        await asyncio.sleep(0)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        release.set()
        await first

    asyncio.run(main())
    calls.close()  # waits for the calls made
    assert done.is_set()


def test_errors_reach_the_caller_and_a_closed_caller_starts_again() -> None:
    calls = BlockingCalls("conveyor-test", threads=2)

    def boom() -> None:
        raise ValueError("boom")

    async def main() -> str:
        with pytest.raises(ValueError, match="boom"):
            await calls.run(boom)
        calls.close()
        return await calls.run(lambda: "again")

    try:
        assert asyncio.run(main()) == "again"
    finally:
        calls.close()


def test_without_threads_of_its_own_it_uses_the_loops_executor() -> None:
    calls = BlockingCalls("unused", threads=None)

    async def main() -> str:
        return await calls.run(lambda: threading.current_thread().name)

    assert not asyncio.run(main()).startswith("unused")
