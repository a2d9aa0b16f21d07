"""A real local receiver for webhook tests: an HTTP server on 127.0.0.1 in a thread that records each request and
answers from a script (status codes, "hang" to sleep past the sender's time-out, "close" to close the connection
without an answer). Every request is recorded when it arrives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from conveyor import Conveyor
from conveyor.webhooks import subscriptions
from conveyor.webhooks.service import WebhookSender


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    script: list[int | str] = field(default_factory=list)  # answers in turn; then `default`
    default: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self) -> int | str:
        with self.lock:
            return self.script.pop(0) if self.script else self.default

    def bodies(self) -> list[Any]:
        with self.lock:
            return [r.json for r in self.requests]


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # bursts of connections from the sender are normal
    daemon_threads = True


@contextlib.contextmanager
def serve_receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            recv = holder["r"]
            body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
            answer = recv.answer()
            with recv.lock:
                recv.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            if answer == "hang":
                time.sleep(12)
                answer = 200
            if answer == "close":  # no answer at all: the connection just closes
                self.close_connection = True
                return
            self.send_response(int(answer))
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    holder["r"] = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield holder["r"]
    server.shutdown()
    server.server_close()


def drain(app: Conveyor, clock: Callable[[], float] | None = None) -> int:
    """One sender on the app's database, run until nothing is due (at `clock`'s time), then closed."""
    sender = WebhookSender(subscriptions.store(app), app.settings, clock or app.clock)

    async def go() -> int:
        try:
            return await sender.drain(timeout_s=120)
        finally:
            await sender.close()

    return asyncio.run(go())
