"""The one way to call the (blocking) backend from async code above it: `BlockingCalls.run`.

A call runs in a thread, so the event loop never waits on the database, and runs to its end even if the caller is
cancelled: the caller stops waiting, but a write it queued is never dropped half-way (a worker stopping still
records the outcomes it sent). The worker and the event hub each have a thread of their own, so their database
calls keep their order and never queue behind a slow page; the dashboard uses the event loop's shared threads.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class BlockingCalls:
    """Blocking calls from async code: in `threads` threads of its own named `name`, or, with `threads=None`, in
    the event loop's default executor (the one `asyncio.to_thread` uses)."""

    def __init__(self, name: str, threads: int | None = 1) -> None:
        self.name = name
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if self._pool is None and self.threads is not None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.shield(asyncio.get_running_loop().run_in_executor(self._pool, call))

    def close(self, wait: bool = True) -> None:
        """Let the calls made finish (`wait`), then release the threads; a later call starts new ones."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait)
