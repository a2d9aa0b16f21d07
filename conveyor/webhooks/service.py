"""The sender: a worker's side service that claims due deliveries from the outbox and POSTs them.

A claim leases each delivery (`next_attempt_at` moves ahead), so several workers never send one at once, and one
that dies mid-send lets another send it when the lease ends (at least once). The claim only gives a job's earliest
open delivery per target, so each job's events arrive in order. Each endpoint has at most `per_endpoint` requests in
flight, a claim takes at most QUEUED_PER_ENDPOINT deliveries, and an endpoint with that many held is left out of the
next claim: a slow endpoint holds back only itself. A failed attempt
(not 2xx, a time-out, a refused connection, a redirect: none is followed) is retried with exponential backoff and
jitter for at least RETRY_FOR_S; a subscription failing for PAUSE_AFTER_S is paused, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import random
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from conveyor.backends.rows import job_from_row, workflow_from_row
from conveyor.backends.webhooks import WebhookOps
from conveyor.blocking import BlockingCalls
from conveyor.errors import BackendError
from conveyor.webhooks.connections import Connections, ConnectTimeoutError, Endpoint, SendError
from conveyor.webhooks.model import AttemptResult, ClaimedDelivery, Webhook
from conveyor.webhooks.signing import new_secret, signed_headers
from conveyor.webhooks.urls import UnsafeWebhookURLError, checked_address, parse_url
from conveyor.workflows.model import Workflow

if TYPE_CHECKING:
    from conveyor.settings import Settings

log = logging.getLogger("conveyor.webhooks")

SEND_TIMEOUT_S = 10.0  # the whole attempt: connect, send, answer
CONNECT_TIMEOUT_S = 5.0
LEASE_S = 60.0  # a claimed delivery is another sender's again after this (longer than an attempt)
FIRST_RETRY_S = 5.0  # the first retry comes 2.5 to 5 s after the failure (jitter: half to all of the backoff)
MAX_BACKOFF_S = 3600.0
RETRY_FOR_S = 24 * 3600.0  # a delivery is retried until it is this old, then failed
PAUSE_AFTER_S = 24 * 3600.0  # a subscription failing this long is paused
POLL_S = 0.5  # how often an idle sender looks for due deliveries
FLUSH_S = 0.005  # results arriving within this go in one write
BATCH = 128  # most deliveries a sender holds at once
PER_ENDPOINT = 8  # most requests in flight to one endpoint
QUEUED_PER_ENDPOINT = 32  # most deliveries held for one endpoint (a claim takes at most this many)
PRUNE_EVERY_S = 600.0
KEEP_S = 7 * 86400.0  # delivered and failed deliveries are kept a week
USER_AGENT = "Conveyor-Webhooks/0.1"
MAX_ANSWER_BYTES = 64 * 1024  # of an endpoint's answer (not used: only its status code counts)
PARSED_URLS = 4096  # URLs kept parsed, the least recently used forgotten first


@functools.lru_cache(maxsize=PARSED_URLS)
def _parsed(url: str) -> httpx.URL:
    return parse_url(url)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def backoff_s(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """The wait after failed attempt number `attempt` (1-based): FIRST_RETRY_S doubling to MAX_BACKOFF_S, each
    with jitter (half to all of it), so receivers coming back are not hit by every retry at once."""
    base: float = min(FIRST_RETRY_S * 2.0 ** min(attempt - 1, 30), MAX_BACKOFF_S)
    return base * (0.5 + rand() / 2)


def body_of(delivery: ClaimedDelivery) -> str:
    """`{"type", "timestamp", "data"}`: data is the job (or workflow) as the API shows it, as it was at the event."""
    data: Any = delivery.payload
    if delivery.event.startswith("job.") and isinstance(data, dict) and "status" in data:
        data = job_from_row(data, lambda value: value).to_dict()
    elif delivery.event.startswith("workflow.") and isinstance(data, dict) and "steps_total" in data:
        data = Workflow.of(workflow_from_row(data, lambda value: value)).to_dict()
    at = datetime.fromtimestamp(delivery.created_at, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": delivery.event, "timestamp": at, "data": data}, separators=(",", ":"))


class WebhookSender:
    def __init__(
        self,
        backend: WebhookOps,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        *,
        batch: int = BATCH,
        per_endpoint: int = PER_ENDPOINT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.backend = backend
        self.allow_private = settings.webhook_allow_private
        self.job_secret = settings.webhook_secret  # else the database's (`job_webhook_secret`), read when needed
        self.clock = clock
        self.batch = batch
        self.per_endpoint = per_endpoint
        self._calls = BlockingCalls("conveyor-webhooks")
        self._connections = Connections(CONNECT_TIMEOUT_S, MAX_ANSWER_BYTES, ssl_context)
        self._in_flight: dict[str, int] = {}  # deliveries held per endpoint (sending or waiting for a slot)
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._results: list[AttemptResult] = []  # answers not yet written
        self._done = asyncio.Event()
        self._last_prune = 0.0

    # ------------------------------------------------------------------------------------------ loop
    async def run(self) -> None:
        """Send until cancelled: write the results that came in (in one transaction), claim what is due, wait for
        a result or POLL_S. A database error is logged and the next round retries."""
        try:
            while True:
                try:
                    await self._flush()
                    started = await self._start_due()
                    await self._prune()
                except BackendError as exc:
                    log.warning("webhooks: %s", exc)
                    started = 0
                if not started and not self._results:
                    self._done.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._done.wait(), POLL_S)
                    await asyncio.sleep(FLUSH_S)  # let the answers arriving together go in one write
        finally:
            with contextlib.suppress(BackendError):  # what was sent is recorded, not sent again after its lease
                await self._flush()
            await self.close()

    async def run_once(self) -> int:
        """Claim what is due, send it, write the results; returns how many were sent (tests, burst)."""
        started = await self._start_due()
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
        await self._flush()
        return started

    async def drain(self, timeout_s: float = 30.0) -> int:
        """Send until nothing is due (what retries later is left); returns how many attempts were made."""
        total = 0
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sent = await self.run_once()
            if not sent:
                return total
            total += sent
        return total

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._connections.close()
        self._calls.close(wait=False)

    async def _start_due(self) -> int:
        free = min(self.batch - len(self._tasks) - len(self._results), QUEUED_PER_ENDPOINT)
        if free <= 0:
            return 0
        now = self.clock()
        busy = [target for target, n in self._in_flight.items() if n >= QUEUED_PER_ENDPOINT]
        claimed = await self._calls.run(self.backend.claim_deliveries, free, now, now + LEASE_S, busy)
        if not claimed:
            return 0
        webhooks = {w.id: w for w in await self._calls.run(self.backend.list_webhooks)}
        if self.job_secret is None and any(d.webhook_id is None for d in claimed):
            self.job_secret = await self._calls.run(self.backend.job_webhook_secret, new_secret(), now)
        for delivery in claimed:
            self._in_flight[delivery.target] = self._in_flight.get(delivery.target, 0) + 1
            task = asyncio.create_task(self._deliver(delivery, webhooks.get(delivery.webhook_id or "")))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claimed)

    async def _prune(self) -> None:
        now = self.clock()
        if now - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now
            await self._calls.run(self.backend.prune_deliveries, now - KEEP_S)

    # ------------------------------------------------------------------------------------------ one delivery
    async def _deliver(self, delivery: ClaimedDelivery, webhook: Webhook | None) -> None:
        if delivery.webhook_id and webhook is None:  # its subscription was deleted (with its deliveries) since
            self._release([delivery])
            return
        url = webhook.url if webhook is not None else delivery.url or ""
        secret = webhook.secret if webhook is not None else self.job_secret
        slot = self._slots.setdefault(delivery.target, asyncio.Semaphore(self.per_endpoint))
        async with slot:
            result = await self.attempt(delivery, url, secret)
        if not result.ok:
            log.info("webhooks: delivery %d (%s, attempt %d) failed: %s", delivery.id, delivery.event,
                     delivery.attempt, result.error)
        self._results.append(result)
        self._done.set()

    def _release(self, deliveries: list[ClaimedDelivery]) -> None:
        for delivery in deliveries:
            left = self._in_flight.get(delivery.target, 1) - 1
            if left:
                self._in_flight[delivery.target] = left
            else:
                self._in_flight.pop(delivery.target, None)
                self._slots.pop(delivery.target, None)

    async def _flush(self) -> None:
        """Write the results that came in, in one transaction. A delivery stays held (its endpoint's count, and its
        job's next delivery waits) until its result is written; one never written is sent again after its lease."""
        if not self._results:
            return
        results, self._results = self._results, []
        now = self.clock()
        retry_at = [None if r.ok or r.final or now - r.delivery.created_at >= RETRY_FOR_S
                    else now + backoff_s(r.delivery.attempt) for r in results]
        try:
            paused = await self._calls.run(self.backend.settle_deliveries, results, now, retry_at, now - PAUSE_AFTER_S)
        except BackendError:
            self._results[:0] = results
            raise
        self._release([r.delivery for r in results])
        for webhook_id in paused:
            log.warning("webhooks: subscription %s paused: failing for 24 hours", webhook_id)

    async def attempt(self, delivery: ClaimedDelivery, url: str, secret: str | None) -> AttemptResult:
        """One POST of `delivery` to `url`, its outcome as a value (never raises for the endpoint's faults)."""
        body = body_of(delivery)
        headers = signed_headers(secret, f"msg_{delivery.id}", body, self.clock())
        try:
            status = await self._post(url, headers, body)
        except UnsafeWebhookURLError as exc:
            prefix = "" if exc.retryable else "refused: "
            return AttemptResult(delivery, None, f"{prefix}{exc}", final=not exc.retryable)
        except TimeoutError:
            return AttemptResult(delivery, None, f"timed out after {SEND_TIMEOUT_S:g}s")
        except ConnectTimeoutError as exc:
            return AttemptResult(delivery, None, f"timed out connecting: {exc}")
        except (SendError, OSError) as exc:
            return AttemptResult(delivery, None, f"{type(exc).__name__}: {exc or 'no detail'}"[:500])
        if 200 <= status < 300:
            return AttemptResult(delivery, status, None)
        note = " (redirects are not followed)" if 300 <= status < 400 else ""
        return AttemptResult(delivery, status, f"HTTP {status}{note}")

    async def _post(self, url: str, headers: dict[str, str], body: str) -> int:
        target = _parsed(url)  # parsed once; the address is checked at every send
        if _is_address(target.host):  # nothing to resolve: checked here, without a thread hop
            ip = checked_address(target, self.allow_private)
        else:
            ip = await asyncio.to_thread(checked_address, target, self.allow_private)
        https = target.scheme == "https"
        endpoint = Endpoint(target.scheme, str(ip), target.port or (443 if https else 80), target.host)
        fields = [("host", target.netloc.decode("ascii")), ("user-agent", USER_AGENT), *headers.items()]
        async with asyncio.timeout(SEND_TIMEOUT_S):
            return await self._connections.post(endpoint, target.raw_path.decode("ascii"), fields, body.encode())
