"""`conveyor stats`: counts, durations, throughput and live workers."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from conveyor.cli.common import STATUS_STYLE, AppOption, DbOption, JsonOption, handle_errors, load_app, out, print_json


@handle_errors
def stats(db: DbOption = None, app: AppOption = None, as_json: JsonOption = False) -> None:
    """Counts by status and type, durations, throughput and live workers."""
    conveyor = load_app(db, app)
    summary = conveyor.stats()
    if as_json:
        print_json(summary.to_dict())
        return
    counts = Table(title="jobs", box=None, header_style="bold")
    counts.add_column("type")
    for status in STATUS_STYLE:
        counts.add_column(status)
    counts.add_column("p50 s")
    counts.add_column("p95 s")
    for task_type, by_status in sorted(summary.counts_by_type.items()):
        durations = summary.durations.get(task_type, {})
        counts.add_row(
            escape(task_type), *(str(by_status.get(s, 0)) for s in STATUS_STYLE),
            f"{durations['p50']:.3f}" if durations else "-", f"{durations['p95']:.3f}" if durations else "-",
        )
    counts.add_row("[bold]all[/]", *(f"[bold]{summary.counts.get(s, 0)}[/]" for s in STATUS_STYLE), "", "")
    out.print(counts)
    recent = summary.throughput[-5:]
    per_minute = ", ".join(str(m["completed"]) for m in recent)
    out.print(f"completed per minute (last {len(recent)}): {per_minute}")
    out.print(f"live workers: {summary.workers}")
    for u in summary.unserved:  # jobs that wait for a worker registering their type
        waiting = f"{u['pending']} pending" + (f", {u['scheduled']} scheduled" if u["scheduled"] else "")
        out.print(f"[yellow]no worker for [bold]{escape(u['type'])}[/bold]: {waiting}[/]")
