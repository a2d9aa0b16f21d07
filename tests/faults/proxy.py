"""A TCP proxy between worker processes and PostgreSQL, with faults the test switches on and off: what a failover, a
congested network or a half-dead connection looks like from the client's side. asyncio, in a thread of the test.

- `latency`: seconds every request waits before it is forwarded to the server (a spike: set it, then back to 0);
- `hang()` / `resume()`: stop forwarding anything, every connection held open (a peer that went silent);
- `drop_claims(n)`: the next `n` claims of a worker reach the server and commit, then their connection is cut
  before the answer gets back (the worker never learns which jobs it claimed);
- `drop_all()`: cut every connection at once.

A worker's cycles run on a connection of their own (the asyncio `conveyor_work` call): a connection is known as one
once the query's text went through it, and a cycle claims when it names the worker (`host:pid:`) as claimer.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field

CYCLE_MARKER = b"conveyor_work("
READY_FOR_QUERY = b"Z\x00\x00\x00\x05"  # the server's last message of an answer: the transaction is over


@dataclass(eq=False)
class Link:
    """One client connection and its upstream connection."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    cycles: bool = False  # carries a worker's `conveyor_work` cycles
    cut_after_answer: bool = False
    answer: bytearray = field(default_factory=bytearray)

    def close(self) -> None:
        for writer in (self.client, self.server):
            with contextlib.suppress(Exception):
                writer.transport.abort()


class FaultProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.latency = 0.0
        self.claimers: list[bytes] = []  # worker id prefixes whose claims `drop_claims` cuts
        self.dropped_claims = 0
        self.links: set[Link] = set()
        self._to_drop = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._flowing = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    # ------------------------------------------------------------------------------------------ control
    def start(self) -> int:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self.port

    def url(self, database_url: str) -> str:
        """`database_url` through the proxy (unencrypted, so the proxy can see which statement a chunk carries)."""
        base, name = database_url.rsplit("/", 1)
        user = base.split("://", 1)[1].split("@", 1)[0]
        return f"postgresql://{user}@127.0.0.1:{self.port}/{name}?sslmode=disable"

    def _call(self, fn: object) -> None:
        self._loop.call_soon_threadsafe(fn)  # type: ignore[arg-type]

    def hang(self) -> None:
        self._call(self._flowing.clear)

    def resume(self) -> None:
        self._call(self._flowing.set)

    def drop_claims(self, n: int) -> None:
        def arm() -> None:
            self._to_drop += n

        self._call(arm)

    def drop_all(self) -> None:
        def cut() -> None:
            for link in list(self.links):
                link.close()

        self._call(cut)

    def close(self) -> None:
        async def stop() -> None:
            self._flowing.set()
            for link in list(self.links):
                link.close()
            if self._server is not None:
                self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            if self._server is not None:
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # ------------------------------------------------------------------------------------------ forwarding
    async def _listen(self) -> int:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            await self._forward(reader, writer)
        finally:
            self._handlers.discard(handler)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        link = Link(writer, up_writer)
        self.links.add(link)
        try:
            await asyncio.gather(self._pump(link, reader, up_writer, upstream=True),
                                 self._pump(link, up_reader, writer, upstream=False))
        finally:
            self.links.discard(link)
            link.close()

    async def _pump(self, link: Link, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, upstream: bool) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                if upstream:
                    self._watch_request(link, data)
                    if self.latency:
                        await asyncio.sleep(self.latency)
                elif link.cut_after_answer:
                    link.answer += data
                    if READY_FOR_QUERY in link.answer:  # committed, and the worker will never know
                        self.dropped_claims += 1
                        link.close()
                        return
                    continue
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
        link.close()

    def _watch_request(self, link: Link, data: bytes) -> None:
        link.cycles = link.cycles or CYCLE_MARKER in data
        claims = link.cycles and any(worker in data for worker in self.claimers)
        if claims and self._to_drop > 0 and not link.cut_after_answer:
            self._to_drop -= 1
            link.cut_after_answer = True
