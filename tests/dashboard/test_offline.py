"""With every request to another host refused, Swagger UI and the dashboard still render in Chromium: nothing
they need comes from the internet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.dashboard.conftest import Server

# a page, and an element that exists only once the page's scripts have rendered it from our data
RENDERED = [
    ("/docs", ".opblock-summary-path[data-path='/api/v1/jobs']"),
    ("/", "#tp-h"),
    ("/ui/jobs", "#bulk"),
    ("/ui/sources", "#w-url"),
]


@pytest.mark.parametrize(("path", "selector"), RENDERED)
def test_page_renders_with_the_internet_cut_off(
    make_server: Callable[..., Server], page: Any, path: str, selector: str
) -> None:
    server = make_server()
    local = urlsplit(server.url).netloc
    refused: list[str] = []

    def only_local(route: Any) -> None:
        if urlsplit(route.request.url).netloc == local:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.context.route("**/*", only_local)
    page.goto(server.url + path)
    page.wait_for_selector(selector, state="attached")
    page.wait_for_load_state("networkidle")
    assert refused == [], f"{path} tried to load from the internet: {refused}"
    assert page.js_errors == []
