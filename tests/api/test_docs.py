"""`/docs` (Swagger UI) and the dashboard load their assets from this server only: they work offline."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from selectolax.lexbor import LexborHTMLParser

from conveyor.api.app import DOCS_ASSETS

PAGES = ["/docs", "/", "/ui/jobs", "/ui/enqueue", "/ui/sources"]


def asset_urls(html: str) -> list[str]:
    """Every URL the page makes the browser fetch by itself: scripts, stylesheets, icons, images, frames."""
    tree = LexborHTMLParser(html)
    urls = [node.attributes.get("src") for node in tree.css("script[src], img[src], iframe[src]")]
    urls += [node.attributes.get("href") for node in tree.css("link[href]")]
    return [url for url in urls if url]


@pytest.mark.parametrize("path", PAGES)
def test_pages_reference_only_local_assets_and_they_are_served(client: httpx.Client, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200, page.text
    urls = asset_urls(page.text)
    assert urls, f"{path} references no asset: the parser found nothing to check"
    base = str(client.base_url)
    for url in urls:
        absolute = urljoin(base + path, url)
        assert urlsplit(absolute).netloc == urlsplit(base).netloc, f"{path} loads {url} from another host"
        asset = client.get(absolute)
        assert asset.status_code == 200 and asset.content, f"{path}: {url} answered {asset.status_code}"


def test_swagger_ui_is_the_packaged_bundle_pointing_at_our_schema(client: httpx.Client) -> None:
    page = client.get("/docs").text
    assert f"{DOCS_ASSETS}/swagger-ui-bundle.js" in page and "/openapi.json" in page
    assert '"validatorUrl": null' in page  # Swagger UI would otherwise fetch a badge from the online validator
    assert "cdn." not in page
    bundle = client.get(f"{DOCS_ASSETS}/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    assert len(bundle.content) > 100_000  # the real bundle, not a placeholder


def test_no_redoc_page(client: httpx.Client) -> None:
    """ReDoc is left out: its page fetches its vendor's logo from a CDN (the browser test found it)."""
    assert client.get("/redoc").status_code == 404
