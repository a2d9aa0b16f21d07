"""A FastAPI service that hands its slow work to Conveyor: request handlers enqueue and answer at once, workers run
the jobs and report progress, clients follow them with `GET /tasks/{id}`.

    cd examples/fastapi_service
    conveyor worker --app app:jobs              # one or many workers, on any machine that reaches the database
    uvicorn app:api --port 8001                 # the service (another shell)

    curl -s localhost:8001/task-types
    curl -s localhost:8001/tasks/thumbnails -H 'content-type: application/json' \
         -d '{"image_url": "https://example.org/cat.png", "sizes": [64, 128, 256]}'
    curl -s localhost:8001/tasks/<id>           # status, progress, progress_info, result, error

Both processes read `CONVEYOR_DATABASE_URL` (default `sqlite:///./conveyor.db`, a file in this directory).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException
from pydantic import BaseModel

from conveyor import Conveyor, InvalidArgumentsError, InvalidStateError, Job, JobContext, UnknownTaskError
from conveyor.api import create_router

jobs = Conveyor(demo_tasks=False)  # only this service's tasks


@jobs.task(queue="media", max_retries=2, timeout=300)
async def thumbnails(ctx: JobContext, image_url: str, sizes: list[int]) -> dict[str, Any]:
    """Render thumbnails of an image (simulated: a short wait per size)."""
    made = []
    for done, size in enumerate(sizes, start=1):
        await asyncio.sleep(0.3)  # an async task is interrupted at once when the job is cancelled
        made.append(f"{image_url}?width={size}")
        ctx.progress(100 * done // len(sizes), stage="resizing", done=done, total=len(sizes))
    return {"thumbnails": made}


@jobs.task(priority=10)
def welcome_email(ctx: JobContext, address: str, name: str = "there") -> dict[str, str]:
    """Send a welcome email (simulated). Sync tasks run in the worker's thread pool."""
    ctx.progress(50, stage="rendering")
    time.sleep(0.1)
    return {"sent_to": address, "subject": f"Welcome, {name}!"}


class TaskType(BaseModel):
    name: str
    queue: str
    description: str | None
    args_schema: dict[str, Any]


class TaskStatus(BaseModel):
    id: str
    type: str
    status: str
    progress: int
    progress_info: dict[str, Any] | None
    result: Any
    error: str | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> TaskStatus:
        return cls(
            id=job.id, type=job.type, status=job.status.value, progress=job.progress,
            progress_info=job.progress_info, result=job.result, error=job.error,
            created_at=job.created_at, completed_at=job.completed_at,
        )


api = FastAPI(title="Example service with background tasks")


@api.get("/task-types")
def task_types() -> list[TaskType]:
    return [
        TaskType(name=t.name, queue=t.queue, description=t.fn.__doc__, args_schema=t.args_schema())
        for t in jobs.tasks.values()
    ]


@api.post("/tasks/{task_type}", status_code=202)
def start_task(task_type: str, args: Annotated[dict[str, Any] | None, Body()] = None) -> TaskStatus:
    """Enqueue and answer at once (202): the arguments are checked against the task's type hints first."""
    try:
        job = jobs.enqueue(task_type, args or {})
    except UnknownTaskError as exc:
        raise HTTPException(404, exc.message) from exc
    except InvalidArgumentsError as exc:
        raise HTTPException(422, exc.message) from exc
    return TaskStatus.of(job)


@api.get("/tasks/{job_id}")
def task_status(job_id: str) -> TaskStatus:
    job = jobs.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"no task {job_id}")
    return TaskStatus.of(job)


@api.post("/tasks/{job_id}/cancel")
def cancel_task(job_id: str) -> TaskStatus:
    if jobs.get_job(job_id) is None:
        raise HTTPException(404, f"no task {job_id}")
    try:
        return TaskStatus.of(jobs.cancel(job_id))
    except InvalidStateError as exc:
        raise HTTPException(409, exc.message) from exc


# Conveyor's own REST API (lists, queues, stats, live events) next to the service's routes, if you want it.
api.include_router(create_router(jobs), prefix="/conveyor/api/v1")
