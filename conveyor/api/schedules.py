"""The `/schedules` routes of SPEC section 7, relative to `/api/v1`: list, create (409 if the name is taken), read,
change (any field, `paused` included), delete, and trigger now. A bad cron expression, time zone, task or argument is
a 422 naming the field, and nothing is stored."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from conveyor.api.errors import ErrorRoute
from conveyor.api.models import ERRORS as ERRORS_DOC
from conveyor.api.models import JobOut
from conveyor.options import MAX_NAME
from conveyor.schedules.model import ScheduleChange, ScheduleSpec

if TYPE_CHECKING:
    from conveyor.app import Conveyor

ScheduleName = Annotated[str, Path(min_length=1, max_length=MAX_NAME, description="the schedule's name")]


class ScheduleOut(BaseModel):
    name: str
    task: str
    cron: str
    description: str
    timezone: str
    args: dict[str, Any]
    queue: str | None
    priority: int | None
    max_retries: int | None
    timeout: float | None
    tags: list[str]
    paused: bool
    catch_up: bool
    next_run_at: str | None
    last_run_at: str | None
    last_job_id: str | None
    created_at: str
    updated_at: str


class ScheduleList(BaseModel):
    schedules: list[ScheduleOut]


def create_schedules_router(conveyor: Conveyor) -> APIRouter:
    router = APIRouter(route_class=ErrorRoute, responses=ERRORS_DOC, tags=["schedules"])
    schedules = conveyor.schedules

    @router.get("/schedules", response_model=ScheduleList, summary="Every schedule")
    def list_schedules() -> Response:
        return JSONResponse({"schedules": [s.to_dict() for s in schedules.all()]})

    @router.post("/schedules", status_code=201, response_model=ScheduleOut, summary="Create a schedule")
    def create_schedule(body: ScheduleSpec) -> Response:
        """201 and the schedule; 409 if one of that name exists."""
        made = schedules.create(**body.model_dump(exclude_unset=True))
        return JSONResponse(made.to_dict(), status_code=201)

    @router.get("/schedules/{name:path}", response_model=ScheduleOut, summary="One schedule")
    def get_schedule(name: ScheduleName) -> Response:
        return JSONResponse(schedules.get(name).to_dict())

    @router.patch("/schedules/{name:path}", response_model=ScheduleOut, summary="Change a schedule")
    def patch_schedule(name: ScheduleName, body: ScheduleChange) -> Response:
        """Any field; a new cron, time zone or `paused` moves the next run to the first tick from now."""
        return JSONResponse(schedules.update(name, **body.model_dump(exclude_unset=True)).to_dict())

    @router.delete("/schedules/{name:path}", status_code=204, summary="Delete a schedule")
    def delete_schedule(name: ScheduleName) -> Response:
        schedules.delete(name)
        return Response(status_code=204)

    @router.post("/schedules/{name:path}/trigger", status_code=201, response_model=JobOut, summary="Run it now")
    def trigger_schedule(name: ScheduleName) -> Response:
        """Enqueue one job of the schedule now (its next run stays): 201 and the job."""
        return JSONResponse(schedules.trigger(name).to_dict(), status_code=201)

    return router
