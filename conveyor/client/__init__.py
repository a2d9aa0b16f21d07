"""A Python client of the REST API, for producers that do not touch the database: sync `Client`, async `AsyncClient`.

>>> from conveyor.client import Client
>>> with Client("http://127.0.0.1:8000", token="...") as conveyor:     # token default: CONVEYOR_API_TOKEN
...     job = conveyor.enqueue("generate_report", {"contract_name": "A"}, priority=5)
...     done = conveyor.wait(job.id, timeout=300)                       # SSE, falling back to polling

Errors are the core's: `JobNotFoundError` (404), `InvalidStateError` (409), `UnknownTaskError` (422 `unknown_task`),
`InvalidArgumentsError` (400, 413, other 422s),
`JobFailed` and `TimeoutError` from `wait`, and `ApiError` for anything else (401, 5xx), all `ConveyorError`s.
"""

from conveyor.client._common import DEFAULT_URL as DEFAULT_URL  # re-exported
from conveyor.client._common import PREFIX as PREFIX  # re-exported
from conveyor.client._common import ApiError, job_from_dict
from conveyor.client.aio import AsyncClient
from conveyor.client.sync import Client

__all__ = ["ApiError", "AsyncClient", "Client", "job_from_dict"]
