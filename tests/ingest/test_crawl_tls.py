"""HTTPS: the crawler connects to the address it checked, while TLS (SNI and certificate) keeps the host's name."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest

from conveyor.ingest.fetch import CrawlPolicy, FetchError, SafeFetcher
from tests.ingest.conftest import Site, serve

trustme = pytest.importorskip("trustme")


@pytest.fixture(scope="module")
def ca() -> object:
    return trustme.CA()


def tls_site(ca: object, name: str) -> tuple[object, Site]:
    server, site = serve(lambda base: Site(base))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)  # type: ignore[attr-defined]
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server, site


@pytest.fixture
def client_context(ca: object) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)  # type: ignore[attr-defined]
    return context


@pytest.fixture
def docs_site(ca: object) -> Iterator[Site]:
    server, site = tls_site(ca, "docs.example.test")
    yield site
    server.shutdown()  # type: ignore[attr-defined]
    server.server_close()  # type: ignore[attr-defined]


def policy(context: ssl.SSLContext, resolved: list[str]) -> CrawlPolicy:
    return CrawlPolicy(allow_private=True, verify=context, resolver=lambda host, port: resolved)


def test_https_to_the_checked_address_with_the_name_in_sni_and_host(docs_site: Site,
                                                                    client_context: ssl.SSLContext) -> None:
    port = docs_site.base.rsplit(":", 1)[1]
    resolved: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    with SafeFetcher(CrawlPolicy(allow_private=True, verify=client_context, resolver=resolver)) as fetcher:
        fetched = fetcher.get(f"https://docs.example.test:{port}/about.html")
    assert fetched.status == 200 and b"copper weather vanes" in fetched.body
    assert fetched.url == f"https://docs.example.test:{port}/about.html"
    assert resolved == ["docs.example.test"]
    assert docs_site.requests == ["/about.html"]


def test_a_certificate_for_another_name_is_refused(docs_site: Site, client_context: ssl.SSLContext) -> None:
    port = docs_site.base.rsplit(":", 1)[1]
    with SafeFetcher(policy(client_context, ["127.0.0.1"])) as fetcher, pytest.raises(FetchError, match=r"SSL|ertif"):
        fetcher.get(f"https://impostor.example.test:{port}/")


def test_a_connection_for_one_name_never_carries_another_name(docs_site: Site,
                                                             client_context: ssl.SSLContext) -> None:
    """Both names resolve to the same address; the certificate covers only the first. The keep-alive connection of
    the first must not be reused for the second, whose own handshake then fails."""
    port = docs_site.base.rsplit(":", 1)[1]
    with SafeFetcher(policy(client_context, ["127.0.0.1"])) as fetcher:
        assert fetcher.get(f"https://docs.example.test:{port}/about.html").status == 200
        with pytest.raises(FetchError, match=r"SSL|ertif"):
            fetcher.get(f"https://impostor.example.test:{port}/history.html")
    assert docs_site.requests == ["/about.html"]
