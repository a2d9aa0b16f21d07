"""The REST routes of workflows (SPEC section 7), relative to `/api/v1`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse

from conveyor.api.errors import ErrorRoute
from conveyor.api.models import ERRORS as ERRORS_DOC
from conveyor.api.models import WorkflowList, WorkflowOut, WorkflowRequest
from conveyor.job_controls import MAX_LIST_LIMIT
from conveyor.workflows.model import WorkflowStatus

if TYPE_CHECKING:
    from conveyor.app import Conveyor

WorkflowId = Annotated[str, Path(min_length=1, max_length=200, description="the workflow's id")]


def create_workflow_router(conveyor: Conveyor) -> APIRouter:
    router = APIRouter(route_class=ErrorRoute, responses=ERRORS_DOC)
    tags: list[Any] = ["workflows"]

    @router.post("/workflows", status_code=201, response_model=WorkflowOut, tags=tags, summary="Enqueue a workflow")
    def create(body: WorkflowRequest) -> Response:
        """201 and the workflow with its steps. A cycle, a duplicate or unknown step name, an unknown type or bad
        arguments answer 422 naming the step, and nothing is stored."""
        return JSONResponse(conveyor.enqueue_workflow(body).to_dict(), status_code=201)

    @router.get("/workflows", response_model=WorkflowList, tags=tags, summary="List workflows, newest first")
    def list_workflows(
        status: Annotated[list[WorkflowStatus] | None, Query(description="repeatable")] = None,
        name: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        limit: Annotated[int, Query(description=f"clamped to 1..{MAX_LIST_LIMIT}")] = 50,
    ) -> Response:
        found = conveyor.list_workflows(status=status, name=name, limit=limit)
        return JSONResponse({"workflows": [w.to_dict() for w in found]})

    @router.get("/workflows/{workflow_id}", response_model=WorkflowOut, tags=tags, summary="One workflow")
    def get(workflow_id: WorkflowId) -> Response:
        """The workflow with its steps' jobs (each with `step` and `depends_on`); 404 if unknown."""
        return JSONResponse(conveyor.require_workflow(workflow_id).to_dict())

    @router.post("/workflows/{workflow_id}/cancel", response_model=WorkflowOut, tags=tags, summary="Cancel")
    def cancel(workflow_id: WorkflowId) -> Response:
        """Cancels every unfinished step (running ones by request); 409 unless it is running."""
        return JSONResponse(conveyor.cancel_workflow(workflow_id).to_dict())

    @router.post("/workflows/{workflow_id}/retry", response_model=WorkflowOut, tags=tags, summary="Retry")
    def retry(workflow_id: WorkflowId) -> Response:
        """Retries the failed and cancelled steps; 409 unless it failed or was cancelled."""
        return JSONResponse(conveyor.retry_workflow(workflow_id).to_dict())

    return router
