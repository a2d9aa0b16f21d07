"""The public names of the HTTP layer and the client: what users import."""

from __future__ import annotations

import conveyor.api
import conveyor.client


def test_api_exports() -> None:
    assert sorted(conveyor.api.__all__) == ["API_PREFIX", "EventHub", "create_app", "create_router"]
    assert all(hasattr(conveyor.api, name) for name in conveyor.api.__all__)
    assert conveyor.api.API_PREFIX == "/api/v1"


def test_client_exports() -> None:
    assert sorted(conveyor.client.__all__) == ["ApiError", "AsyncClient", "Client", "job_from_dict"]
    assert issubclass(conveyor.client.ApiError, conveyor.ConveyorError)


def test_router_mounted_in_a_users_app(sqlite_app: conveyor.Conveyor) -> None:
    import asyncio
    import threading

    import httpx
    import uvicorn
    from fastapi import FastAPI

    from tests.api.conftest import free_port
    from tests.conftest import wait_for

    users_app = FastAPI()
    users_app.include_router(conveyor.api.create_router(sqlite_app), prefix="/jobs-api")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(users_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=30, what="uvicorn to start")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/jobs-api", timeout=30) as client:
            created = client.post("/jobs", json={"type": "demo.echo", "args": {"a": 1}})
            assert created.status_code == 201 and sqlite_app.get_job(created.json()["id"]) is not None
            # The router's errors keep the SPEC's shape without the app's handlers.
            missing = client.get("/jobs/nope")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
            invalid = client.post("/jobs", json={"type": "demo.echo", "priority": "x"})
            assert invalid.status_code == 422 and set(invalid.json()["error"]) == {"code", "message"}
            not_json = client.post("/jobs", content=b"{", headers={"content-type": "application/json"})
            assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "bad_request"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
