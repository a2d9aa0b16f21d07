"""The optional parts (dashboard, ingestion) are mounted when installed and simply absent otherwise."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor import Conveyor
from conveyor.api.app import _optional_router
from tests.api.conftest import RunningServer


@pytest.fixture
def part_on_path(tmp_path: Path) -> Iterator[str]:
    package = tmp_path / "conveyor_fake_part"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "routes.py").write_text(
        "from fastapi import APIRouter\n"
        "def create_router(conveyor):\n"
        "    router = APIRouter()\n"
        "    @router.get('/hello')\n"
        "    def hello():\n"
        "        return {'tasks': len(conveyor.tasks)}\n"
        "    return router\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield "conveyor_fake_part.routes"
    sys.path.remove(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith("conveyor_fake_part")]:
        del sys.modules[name]


def test_optional_router_found_or_absent(part_on_path: str, sqlite_app: Conveyor) -> None:
    router = _optional_router(part_on_path, "create_router", sqlite_app)
    assert router is not None and [r.path for r in router.routes] == ["/hello"]  # type: ignore[attr-defined]
    assert _optional_router("conveyor_fake_part.missing", "create_router", sqlite_app) is None
    assert _optional_router("no_such_package_at_all.routes", "create_router", sqlite_app) is None


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def test_installed_parts_are_mounted(server: RunningServer, client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    if installed("conveyor.ingest.routes"):
        assert any(p.startswith("/api/v1/sources") for p in paths)
    else:
        assert not any(p.startswith("/api/v1/sources") for p in paths)
    if not installed("conveyor.dashboard"):
        assert_404 = client.get("/")
        assert assert_404.status_code == 404 and assert_404.json()["error"]["code"] == "not_found"
