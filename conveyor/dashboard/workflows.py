"""The workflows pages: a list with each workflow's status and progress (steps completed / steps), and one workflow
drawn as its graph (laid out by dagre, vendored in `static/`), each step coloured by its state and followed live,
with cancel and retry. Added by the built-in `workflows` plugin (`conveyor.plugins.builtin`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from conveyor.errors import ConveyorError
from conveyor.workflows.model import WorkflowStatus

if TYPE_CHECKING:
    from conveyor.dashboard import Dashboard

LIST_SIZE = 100


class WorkflowsPage:
    nav_label = "Workflows"
    nav_path = "/ui/workflows"

    def __init__(self) -> None:
        self._dashboard: Dashboard | None = None

    @property
    def dashboard(self) -> Dashboard:
        assert self._dashboard is not None, "add_routes binds the page to its dashboard"
        return self._dashboard

    def add_routes(self, dashboard: Dashboard) -> None:
        self._dashboard = dashboard
        r = dashboard.router
        r.add_api_route("/ui/workflows", self.list_page, methods=["GET"])
        r.add_api_route("/ui/workflows/{workflow_id}", self.page, methods=["GET"])
        r.add_api_route("/ui/data/workflows/{workflow_id}", self.data, methods=["GET"])
        r.add_api_route("/ui/workflows/{workflow_id}/{action}", self.act, methods=["POST"])

    async def list_page(self, request: Request) -> Response:
        d = self.dashboard
        if (gate := d.auth.page_gate(request)) is not None:
            return gate
        status = request.query_params.get("status") or None
        if status not in {None, *(s.value for s in WorkflowStatus)}:
            status = None
        found = await d.call(d.conveyor.list_workflows, status, None, LIST_SIZE)
        return d.render(request, "workflows.html", workflows=found, status=status,
                        statuses=[s.value for s in WorkflowStatus])

    async def page(self, request: Request, workflow_id: str) -> Response:
        d = self.dashboard
        if (gate := d.auth.page_gate(request)) is not None:
            return gate
        workflow = await d.call(d.conveyor.get_workflow, workflow_id)
        if workflow is None:
            return d.render(request, "not_found.html", status_code=404, job_id=None)
        return d.render(request, "workflow.html", workflow=workflow)

    async def data(self, request: Request, workflow_id: str) -> Response:
        """The workflow with its steps as JSON: the page draws the graph from it and polls it while it runs."""
        d = self.dashboard
        if (gate := d.auth.data_gate(request)) is not None:
            return gate
        workflow = await d.call(d.conveyor.get_workflow, workflow_id)
        if workflow is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(workflow.to_dict(), headers={"Cache-Control": "no-store"})

    async def act(self, request: Request, workflow_id: str, action: str) -> Response:
        d = self.dashboard
        refused, _ = await d.auth.action_gate(request)
        if refused is not None:
            return refused
        back = f"/ui/workflows/{workflow_id}"
        steer = {"cancel": d.conveyor.cancel_workflow, "retry": d.conveyor.retry_workflow}.get(action)
        if steer is None:
            return d.done(request, f"Unknown action {action!r}.", back, ok=False, status=404)
        try:
            workflow = await d.call(steer, workflow_id)
        except ConveyorError as exc:
            return d.done(request, exc.message, back, ok=False)
        verb = "cancelled" if action == "cancel" else "retried"
        return d.done(request, f"Workflow {verb}.", back, workflow=workflow.to_dict())
