"""The `Conveyor` facade: register tasks, enqueue jobs, read and steer them, run workers."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

from conveyor.backends import Backend, open_backend
from conveyor.backends.base import NewJob, Stats, TaskInfo
from conveyor.errors import (
    ConfigError,
    InvalidArgumentsError,
    UnknownTaskError,
)
from conveyor.ids import uuid7
from conveyor.job import Job, WorkerInfo
from conveyor.job_controls import JobControls
from conveyor.options import EnqueueSpec, JobOptions
from conveyor.plugins import Plugin
from conveyor.plugins.builtin import BUILTIN_PLUGINS, DEMO, INGESTION
from conveyor.queues import QueueControls
from conveyor.retry import DEFAULT_RETRY_BACKOFF_MAX_S, DEFAULT_RETRY_BACKOFF_S, RetryPolicy
from conveyor.schedules.manager import Schedules
from conveyor.settings import Settings
from conveyor.task import Task
from conveyor.worker import Worker
from conveyor.workflows.methods import WorkflowMethods

F = TypeVar("F", bound=Callable[..., Any])


class Conveyor(JobControls, QueueControls, WorkflowMethods):
    """A job system bound to one database.

    >>> app = Conveyor()                       # CONVEYOR_DATABASE_URL, default sqlite:///./conveyor.db
    >>> app = Conveyor("sqlite:////tmp/jobs.db")

    It registers the built-in demo tasks (`demo_tasks`) and ingestion tasks (`ingest_tasks`, default: as
    `demo_tasks`); `plugins` adds parts of your own (tasks, routes, dashboard pages: see `conveyor.plugins`).
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
        demo_tasks: bool = True,
        ingest_tasks: bool | None = None,
        plugins: Sequence[Plugin] = (),
    ) -> None:
        base = settings or Settings.from_env()
        self.settings = base.with_changes(database_url=database_url)
        self.clock = clock
        self.tasks: dict[str, Task] = {}
        self._backend: Backend | None = None
        self._backend_lock = threading.Lock()
        self.schedules = Schedules(self)  # cron schedules (SPEC section 7)
        self.plugins = self._plug_in(plugins, demo_tasks, demo_tasks if ingest_tasks is None else ingest_tasks)

    def _plug_in(self, plugins: Sequence[Plugin], demo_tasks: bool, ingest_tasks: bool) -> tuple[Plugin, ...]:
        """The built-in plugins and the given ones; registers their tasks (the built-ins' only if asked)."""
        chosen = (*BUILTIN_PLUGINS, *plugins)
        names = [p.name for p in chosen]
        if len(set(names)) < len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"two plugins share a name: {', '.join(twice)}")
        with_tasks = {DEMO.name: demo_tasks, INGESTION.name: ingest_tasks}
        for plugin in chosen:
            if plugin.tasks is not None and with_tasks.get(plugin.name, True):
                plugin.tasks(self)
        return chosen

    # ------------------------------------------------------------------------------------------ set-up
    @property
    def database_url(self) -> str:
        return self.settings.database_url

    def use_database(self, url: str) -> None:
        """Point the app at another database; only before its first use."""
        if self._backend is not None and url != self.settings.database_url:
            raise ConfigError("the app's database is already open; call use_database before using the app")
        self.settings = self.settings.with_changes(database_url=url)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    self._backend = open_backend(
                        self.settings.database_url, connect_timeout_s=self.settings.connect_timeout_s
                    )
        return self._backend

    def close(self) -> None:
        with self._backend_lock:
            if self._backend is not None:
                self._backend.close()
                self._backend = None

    def __enter__(self) -> Conveyor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ tasks
    @overload
    def task(self, fn: F) -> Task: ...

    @overload
    def task(
        self,
        fn: None = None,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        max_retries: int | None = None,
        timeout: float | None = None,
        retry_backoff: float = DEFAULT_RETRY_BACKOFF_S,
        retry_backoff_max: float = DEFAULT_RETRY_BACKOFF_MAX_S,
        process: bool = False,
        group_key: str | Callable[[dict[str, Any]], str] | None = None,
    ) -> Callable[[F], Task]: ...

    def task(
        self,
        fn: F | None = None,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        max_retries: int | None = None,
        timeout: float | None = None,
        retry_backoff: float = DEFAULT_RETRY_BACKOFF_S,
        retry_backoff_max: float = DEFAULT_RETRY_BACKOFF_MAX_S,
        process: bool = False,
        group_key: str | Callable[[dict[str, Any]], str] | None = None,
    ) -> Task | Callable[[F], Task]:
        """Register a function (sync or async) as a task; bare `@app.task` or `@app.task(...)`.

        `timeout` is the seconds one attempt may run (None: unlimited); `retry_backoff` and `retry_backoff_max`
        are the base and the cap of the exponential backoff between attempts. `process=True` runs a sync,
        module-level function in a worker's process pool (CPU-heavy work); its context reports no progress.
        `group_key` puts its jobs in a group for fair limits per key: a string, or a function of the args.
        """

        def register(func: F) -> Task:
            if max_retries is not None and max_retries < 0:
                raise ConfigError(f"max_retries must not be negative, got {max_retries}")
            if timeout is not None and timeout <= 0:
                raise ConfigError(f"timeout must be positive, got {timeout}")
            if process and (inspect.iscoroutinefunction(func) or "<locals>" in func.__qualname__):
                raise ConfigError(f"{func.__qualname__}: process=True needs a sync function defined at module level")
            task = Task(
                app=self,
                name=name or func.__name__,
                fn=func,
                queue=queue,
                priority=priority,
                max_retries=max_retries,
                timeout=timeout,
                retry_policy=RetryPolicy(retry_backoff, retry_backoff_max),
                process=process,
                group_key=group_key,
            )
            self.tasks[task.name] = task
            return task

        return register(fn) if fn is not None else register

    def periodic(self, cron: str, **fields: Any) -> Callable[[Any], Task]:
        """Declare a cron schedule of a task in code: `@app.periodic("*/5 * * * *", args={...})`."""
        return self.schedules.periodic(cron, **fields)

    def task_infos(self) -> list[TaskInfo]:
        """Each task's effective defaults (what a job of it gets when the enqueue gives no option)."""
        infos = []
        for task in self.tasks.values():
            template = JobOptions().resolve(task, self.settings, 0.0)
            infos.append(TaskInfo(task.name, template.queue, template.priority, template.max_retries, template.timeout))
        return infos

    def get_task(self, task_type: str) -> Task:
        task = self.tasks.get(task_type)
        if task is None:
            raise UnknownTaskError(task_type, list(self.tasks))
        return task

    # ------------------------------------------------------------------------------------------ enqueue
    def enqueue(
        self,
        task_type: str,
        args: dict[str, Any] | None = None,
        *,
        connection: Any = None,
        **options: Any,
    ) -> Job:
        """Validate and store one job. Options (`queue`, `priority`, `max_retries`, `timeout`, `delay` or `run_at`,
        `unique_key`, `tags`, `metadata`: see `JobOptions`) left out take the task's defaults. With a `unique_key`
        that an open job holds, that job is returned (its `existing` is True). `connection` (PostgreSQL): the
        caller's psycopg connection or transaction; the job then exists only if the caller's transaction commits."""
        task = self.get_task(task_type)
        payload = task.validate({} if args is None else args)
        now = self.clock()
        job = task.keyed(JobOptions.of(**options).resolve(task, self.settings, now).with_payload(uuid7(), payload))
        if connection is not None:
            return self.backend.insert_jobs([job], now, connection=connection)[0]
        return self.backend.insert_jobs([job], now)[0]

    def enqueue_many(
        self,
        task_type: str,
        args_list: Sequence[dict[str, Any]],
        *,
        connection: Any = None,
        **options: Any,
    ) -> list[Job]:
        """Validate every payload, then store all jobs in one transaction, each with these options; one bad payload
        stores nothing. `connection` (PostgreSQL): write in the caller's transaction, as `enqueue` does."""
        task = self.get_task(task_type)
        chosen = JobOptions.of(**options)
        payloads = task.validate_many(list(args_list))
        if not payloads:
            return []
        now = self.clock()
        template = chosen.resolve(task, self.settings, now)
        if template.group_key is None and callable(task.group_key):  # a key per payload: one row each
            jobs = [task.keyed(job) for job in template.batch(payloads)]
            return self.backend.insert_jobs(jobs, now, connection=connection)
        if connection is not None:
            return self.backend.insert_many(template, payloads, now, connection=connection)
        return self.backend.insert_many(template, payloads, now)

    def enqueue_batch(self, specs: Sequence[dict[str, Any] | EnqueueSpec]) -> list[Job]:
        """Enqueue jobs of any types, each with its own options, in one transaction: dicts with `type`, `args` and
        the options of `enqueue`, or `EnqueueSpec` values. One bad job stores nothing; the error names its index
        (`jobs[3]: ...`)."""
        new_jobs: list[NewJob] = []
        now = self.clock()
        for i, spec in enumerate(specs):
            try:
                one = spec if isinstance(spec, EnqueueSpec) else EnqueueSpec.of(**spec)
                task = self.get_task(one.type)
                payload = task.validate(one.args)
                new_jobs.append(task.keyed(one.resolve(task, self.settings, now).with_payload(uuid7(), payload)))
            except UnknownTaskError as exc:  # the same error as from `enqueue`, saying which job
                raise UnknownTaskError(exc.task_type, exc.known, where=f"jobs[{i}]") from None
            except InvalidArgumentsError as exc:
                raise InvalidArgumentsError(f"jobs[{i}]: {exc.message}", errors=exc.errors) from None
        return self.backend.insert_jobs(new_jobs, now) if new_jobs else []

    # ------------------------------------------------------------------------------------------ observing
    def stats(self) -> Stats:
        return self.backend.stats(self.clock())

    def list_workers(self) -> list[WorkerInfo]:
        return self.backend.list_workers(self.clock())

    # ------------------------------------------------------------------------------------------ workers
    def run_worker(
        self,
        concurrency: int | None = None,
        queues: Sequence[str] | None = None,
        *,
        burst: bool = False,
        lease_s: float | None = None,
        shutdown_grace_s: float | None = None,
        handle_signals: bool | None = None,
    ) -> None:
        """Run a worker in this process until it is stopped (SIGTERM/SIGINT), or, with `burst`, until no job is
        left to claim."""
        worker = Worker(
            self,
            concurrency=concurrency,
            queues=tuple(queues) if queues else None,
            burst=burst,
            lease_s=lease_s,
            shutdown_grace_s=shutdown_grace_s,
        )
        if handle_signals is None:
            handle_signals = threading.current_thread() is threading.main_thread()
        asyncio.run(worker.run(handle_signals=handle_signals))
