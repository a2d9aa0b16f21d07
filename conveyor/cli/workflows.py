"""`conveyor workflows list|show|cancel|retry`: inspect and steer workflows; `show` draws the graph as a tree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from conveyor.app import Conveyor
from conveyor.cli.common import AppOption, DbOption, JsonOption, ago, handle_errors, load_app, out, print_json, styled
from conveyor.job import Job
from conveyor.workflows.model import Workflow

workflows_cli = typer.Typer(help="Inspect and steer workflows.", no_args_is_help=True)
IdArgument = Annotated[str, typer.Argument(metavar="ID")]


@workflows_cli.command("list")
@handle_errors
def workflows_list(
    db: DbOption = None,
    app: AppOption = None,
    status: Annotated[list[str] | None, typer.Option(help="Filter by status; repeat for more.")] = None,
    name: Annotated[str | None, typer.Option(help="Filter by workflow name.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (1-1000).")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List workflows, newest first, with their progress (steps completed / steps)."""
    conveyor = load_app(db, app)
    found = conveyor.list_workflows(status=status, name=name, limit=limit)
    if as_json:
        print_json({"workflows": [w.to_dict() for w in found]})
        return
    table = Table(box=None, header_style="bold")
    for column in ("id", "name", "status", "steps", "created"):
        table.add_column(column, no_wrap=column == "id")
    for w in found:
        table.add_row(w.id, escape(w.name), styled(w.status), f"{w.steps_done}/{w.steps_total}", ago(w.created_at))
    out.print(table if found else "no workflows")


def graph_tree(workflow: Workflow) -> Tree:
    """The workflow's graph as a tree: each step under its first parent (in step order), its other parents named
    beside it, so every step appears once however many parents it has."""
    steps = workflow.steps or []
    by_id = {j.id: j for j in steps}
    order = {j.id: i for i, j in enumerate(steps)}
    children: dict[str | None, list[Job]] = {}
    for job in steps:
        parents = sorted((p for p in job.depends_on if p in by_id), key=order.__getitem__)
        children.setdefault(parents[0] if parents else None, []).append(job)
    root = Tree(f"[bold]{escape(workflow.name)}[/] {styled(workflow.status)} "
                f"{workflow.steps_done}/{workflow.steps_total} steps  [dim]{workflow.id}[/]")

    def label(job: Job) -> str:
        parents = sorted((p for p in job.depends_on if p in by_id), key=order.__getitem__)
        also = [escape(by_id[p].step or p) for p in parents[1:]]
        extra = f" [dim](also after {', '.join(also)})[/]" if also else ""
        error = f" [red]{escape(job.error)}[/]" if job.error and job.status != "completed" else ""
        return f"{escape(job.step or job.id)} {styled(job.status)}{extra}{error}"

    def grow(node: Tree, parent: str | None) -> None:
        for job in children.get(parent, []):
            grow(node.add(label(job)), job.id)

    grow(root, None)
    return root


@workflows_cli.command("show")
@handle_errors
def workflows_show(
    workflow_id: IdArgument, db: DbOption = None, app: AppOption = None, as_json: JsonOption = False
) -> None:
    """Show a workflow: its graph as a tree, each step with its state."""
    workflow = load_app(db, app).require_workflow(workflow_id)
    if as_json:
        print_json(workflow.to_dict())
    else:
        out.print(graph_tree(workflow))


def _action(action: Callable[[Conveyor, str], Workflow]) -> Callable[..., None]:
    @handle_errors
    def command(
        workflow_id: IdArgument, db: DbOption = None, app: AppOption = None, as_json: JsonOption = False
    ) -> None:
        workflow = action(load_app(db, app), workflow_id)
        if as_json:
            print_json(workflow.to_dict())
        else:
            out.print(f"{workflow.id} {styled(workflow.status)} {workflow.steps_done}/{workflow.steps_total} steps")

    return command


workflows_cli.command("cancel", help="Cancel every unfinished step of a workflow.")(
    _action(lambda c, i: c.cancel_workflow(i))
)
workflows_cli.command("retry", help="Retry the failed and cancelled steps of a workflow.")(
    _action(lambda c, i: c.retry_workflow(i))
)
