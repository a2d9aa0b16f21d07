"""Webhook operations of the shared SQL backend (a mixin of `SQLBackend`): subscriptions, and the deliveries that the
database's triggers write into the outbox, claimed, settled and listed here. Queries: `<dialect>/webhooks.sql`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.backends.driver import Driver, Tx, dumps
from conveyor.backends.rows import is_uuid
from conveyor.job import to_datetime
from conveyor.webhooks.model import (
    AttemptResult,
    ClaimedDelivery,
    Delivery,
    NewWebhook,
    Webhook,
    WebhookChange,
    WebhookNotFoundError,
)

PRUNE_BATCH = 1000
JOB_SECRET = "jobs"  # noqa: S105 - the name of the stored secret that signs deliveries to jobs' own webhook_url


class WebhookOps:
    driver: Driver

    def _webhook(self, row: dict[str, Any]) -> Webhook:
        events = row["events"]
        return Webhook(
            id=str(row["id"]),
            url=row["url"],
            events=tuple(self.driver.decode(events) if isinstance(events, str) else events),
            filter_type=row["filter_type"],
            filter_queue=row["filter_queue"],
            filter_tag=row["filter_tag"],
            paused=bool(row["paused"]),
            paused_reason=row["paused_reason"],
            failing_since=to_datetime(row["failing_since"]),
            created_at=to_datetime(row["created_at"]),  # type: ignore[arg-type]
            updated_at=to_datetime(row["updated_at"]),  # type: ignore[arg-type]
            secret=row["secret"],
        )

    def create_webhook(self, new: NewWebhook, now: float) -> Webhook:
        params = {
            "id": new.id, "url": new.url, "events": self.driver.array(new.events), "filter_type": new.filter_type,
            "filter_queue": new.filter_queue, "filter_tag": new.filter_tag, "secret": new.secret,
            "paused": new.paused, "now": now,
        }

        def go(tx: Tx) -> Webhook:
            tx.execute("insert_webhook", params)
            return self._webhook(tx.dicts("get_webhook", {"id": new.id})[0])

        return self.driver.write(go)

    def list_webhooks(self) -> list[Webhook]:
        return [self._webhook(r) for r in self.driver.read(lambda tx: tx.dicts("list_webhooks"))]

    def get_webhook(self, webhook_id: str) -> Webhook:
        rows = self.driver.read(lambda tx: tx.dicts("get_webhook", {"id": webhook_id})) if is_uuid(webhook_id) else []
        if not rows:
            raise WebhookNotFoundError(webhook_id)
        return self._webhook(rows[0])

    def update_webhook(self, change: WebhookChange, now: float) -> Webhook:
        if not is_uuid(change.id):
            raise WebhookNotFoundError(change.id)
        params = {
            "id": change.id,
            "events": self.driver.array(change.events),
            "filter_type": change.filter_type or None,
            "filter_queue": change.filter_queue or None,
            "filter_tag": change.filter_tag or None,
            "clear_type": change.filter_type == "",
            "clear_queue": change.filter_queue == "",
            "clear_tag": change.filter_tag == "",
            "paused": change.paused,
            "paused_reason": change.paused_reason,
            "now": now,
        }

        def go(tx: Tx) -> Webhook:
            if tx.execute("update_webhook", params) == 0:
                raise WebhookNotFoundError(change.id)
            return self._webhook(tx.dicts("get_webhook", {"id": change.id})[0])

        return self.driver.write(go)

    def delete_webhook(self, webhook_id: str) -> None:
        if not is_uuid(webhook_id):
            raise WebhookNotFoundError(webhook_id)

        def go(tx: Tx) -> None:
            tx.execute("delete_webhook_deliveries", {"id": webhook_id})
            if tx.execute("delete_webhook", {"id": webhook_id}) == 0:
                raise WebhookNotFoundError(webhook_id)

        self.driver.write(go)

    def job_webhook_secret(self, candidate: str, now: float) -> str:
        """The stored secret that signs deliveries to jobs' own webhook_url; `candidate` is stored as that secret if
        there is none yet (of processes racing to store one, the first wins and all of them return its)."""
        params = {"name": JOB_SECRET}
        found = self.driver.read(lambda tx: tx.rows("get_webhook_secret", params))
        if found:
            return str(found[0][0])

        def go(tx: Tx) -> str:
            tx.execute("insert_webhook_secret", {**params, "secret": candidate, "now": now})
            return str(tx.rows("get_webhook_secret", params)[0][0])

        return self.driver.write(go)

    # ------------------------------------------------------------------------------------------ sending
    def claim_deliveries(
        self, limit: int, now: float, lease_until: float, busy: Sequence[str] = ()
    ) -> list[ClaimedDelivery]:
        """Up to `limit` due deliveries, each the earliest open one of its job and target, none of the `busy`
        targets; each held until `lease_until` (a sender that dies lets another send it then)."""
        params = {"limit": limit, "now": now, "lease_until": lease_until, "busy": self.driver.array(list(busy))}
        rows = self.driver.write(lambda tx: tx.rows("claim_webhook_deliveries", params))
        claimed = [
            ClaimedDelivery(int(r[0]), r[1], r[2], r[3], r[4], self.driver.decode(r[5]), int(r[6]), float(r[7]))
            for r in rows
        ]
        return sorted(claimed, key=lambda d: d.id)

    def settle_deliveries(
        self, results: Sequence[AttemptResult], now: float, retry_at: Sequence[float | None], pause_before: float
    ) -> list[str]:
        """Write attempts' results (each guarded by its attempt number): delivered, or retried at `retry_at[i]`, or
        failed for good (None). A subscription's failure streak starts or ends; one failing since before
        `pause_before` is paused. Returns the ids of the subscriptions this paused."""

        def go(tx: Tx) -> list[str]:
            paused: list[str] = []
            for result, retry in zip(results, retry_at, strict=True):
                d = result.delivery
                base = {"id": d.id, "attempt": d.attempt, "status_code": result.status_code, "now": now}
                if result.ok:
                    tx.execute("webhook_delivered", base)
                    if d.webhook_id:
                        tx.execute("webhook_succeeded", {"id": d.webhook_id})
                    continue
                tx.execute("webhook_attempt_failed", {**base, "error": result.error, "retry_at": retry})
                if d.webhook_id:
                    reason = f"failing for 24 hours; last error: {result.error}"
                    params = {"id": d.webhook_id, "now": now, "pause_before": pause_before, "reason": reason}
                    found = tx.rows("webhook_failing", params)
                    if found and found[0][0] and d.webhook_id not in paused:
                        paused.append(d.webhook_id)
            return paused

        return self.driver.write(go)

    def record_delivery(self, webhook: Webhook, event: str, payload: dict[str, Any], result: AttemptResult,
                        now: float) -> None:
        """A delivery sent at once (`POST /webhooks/{id}/test`): logged with its result, never retried."""
        params = {
            "webhook_id": webhook.id, "url": None, "event": event, "job_id": None, "payload": dumps(payload),
            "attempt": 1, "next_attempt_at": now, "status": "delivered" if result.ok else "failed",
            "status_code": result.status_code, "error": result.error, "now": now, "attempted_at": now,
            "delivered_at": now if result.ok else None,
        }
        self.driver.write(lambda tx: tx.execute("insert_webhook_delivery", params))

    # ------------------------------------------------------------------------------------------ reading
    def _delivery(self, row: dict[str, Any]) -> Delivery:
        history = row["history"]
        return Delivery(
            id=int(row["id"]),
            webhook_id=row["webhook_id"],
            url=row["url"],
            event=row["event"],
            job_id=row["job_id"],
            attempt=row["attempt"],
            status=row["status"],
            status_code=row["status_code"],
            error=row["error"],
            created_at=to_datetime(row["created_at"]),  # type: ignore[arg-type]
            attempted_at=to_datetime(row["attempted_at"]),
            delivered_at=to_datetime(row["delivered_at"]),
            next_attempt_at=to_datetime(row["next_attempt_at"]),
            history=tuple(self.driver.decode(history) if isinstance(history, str) else history or ()),
        )

    def webhook_deliveries(self, webhook_id: str, limit: int = 50, before: int | None = None) -> list[Delivery]:
        """A subscription's deliveries, newest first."""
        self.get_webhook(webhook_id)
        params = {"webhook_id": webhook_id, "limit": limit, "before": before}
        return [self._delivery(r) for r in self.driver.read(lambda tx: tx.dicts("list_webhook_deliveries", params))]

    def job_deliveries(self, job_id: str) -> list[Delivery]:
        """Every delivery of one job's events, oldest first."""
        if not is_uuid(job_id):
            return []
        rows = self.driver.read(lambda tx: tx.dicts("job_webhook_deliveries", {"job_id": job_id}))
        return [self._delivery(r) for r in rows]

    def prune_deliveries(self, before: float) -> int:
        """Delivered and failed deliveries created before `before`, in short transactions."""
        total = 0
        while True:
            n = self.driver.write(
                lambda tx: tx.execute("prune_webhook_deliveries", {"before": before, "batch": PRUNE_BATCH})
            )
            total += n
            if n < PRUNE_BATCH:
                return total
