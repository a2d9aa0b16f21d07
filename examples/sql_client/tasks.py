"""The Python side of the SQL-only client: the tasks that jobs enqueued from SQL run. Start a worker on the same
PostgreSQL database (`pip install 'conveyor-jobs[postgres]'`):

    cd examples/sql_client
    conveyor worker --app tasks:app --db "$DATABASE_URL"
"""

from __future__ import annotations

from conveyor import Conveyor, JobContext

app = Conveyor(demo_tasks=False)


@app.task(queue="mail", max_retries=5)
def send_receipt(ctx: JobContext, order_id: int, email: str) -> dict[str, str]:
    """Email the receipt of an order (simulated)."""
    ctx.logger.info("receipt of order %s to %s", order_id, email)
    return {"receipt": f"R-{order_id:06d}", "sent_to": email}


@app.task(queue="mail")
def remind(ctx: JobContext, email: str) -> dict[str, str]:
    """Remind a customer of an abandoned basket (simulated)."""
    return {"reminded": email}
