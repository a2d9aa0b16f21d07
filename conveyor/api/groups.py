"""The REST routes of fair limits per key: a queue's keys (`GET /queues/{name}/groups`) and one key's overrides of
the queue's group limits (`GET`/`PUT /queues/{name}/groups/{key}`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from conveyor.queues import MAX_CONCURRENCY, MAX_RATE, MIN_RATE

if TYPE_CHECKING:
    from conveyor.app import Conveyor

QueueName = Annotated[str, Path(min_length=1, max_length=200)]
GroupKey = Annotated[str, Path(min_length=1, max_length=200)]


class GroupPut(BaseModel):
    """A key's own limits; a field left out or `null` takes the queue's `group_concurrency` / `group_rate_limit`."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY, strict=True)
    rate_limit: float | None = Field(default=None, ge=MIN_RATE, le=MAX_RATE, description="starts per second")


class GroupOverrides(BaseModel):
    concurrency: bool
    rate_limit: bool


class GroupOut(BaseModel):
    key: str
    running: int
    ready: int
    concurrency: int | None
    rate_limit: float | None
    overrides: GroupOverrides


class GroupList(BaseModel):
    queue: str
    groups: list[GroupOut]
    total: int


def add_group_routes(router: APIRouter, conveyor: Conveyor) -> None:
    tags: list[str | Any] = ["queues"]

    @router.get("/queues/{name}/groups", response_model=GroupList, tags=tags, summary="A queue's keys")
    def list_groups(name: QueueName, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
        """The queue's keys, busiest first (running, then ready), with their limits; `total` counts every key."""
        groups, total = conveyor.list_groups(name, limit=limit)
        return JSONResponse({"queue": name, "groups": [g.to_dict() for g in groups], "total": total})

    @router.get("/queues/{name}/groups/{key}", response_model=GroupOut, tags=tags, summary="One key of a queue")
    def get_group(name: QueueName, key: GroupKey) -> Response:
        return JSONResponse(conveyor.get_group(name, key).to_dict())

    @router.put("/queues/{name}/groups/{key}", response_model=GroupOut, tags=tags, summary="Override a key's limits")
    def put_group(name: QueueName, key: GroupKey, body: GroupPut) -> Response:
        return JSONResponse(conveyor.set_group(name, key, concurrency=body.concurrency,
                                               rate_limit=body.rate_limit).to_dict())
