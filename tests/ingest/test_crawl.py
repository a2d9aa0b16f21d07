"""The crawler against a real website on loopback, and its SSRF guards."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from conveyor.ingest.crawl import CrawlState, Page, crawl, normalise_url
from conveyor.ingest.errors import CrawlError, UnsafeURLError
from conveyor.ingest.fetch import CrawlPolicy, SafeFetcher, address_refusal, check_url, check_url_statically
from tests.ingest.conftest import Site, serve

ALLOW = CrawlPolicy(allow_private=True)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b::a00:1", "private"),
        ("2002:7f00:1::", "loopback"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_refused_addresses(address: str, why: str) -> None:
    reason = address_refusal(ipaddress.ip_address(address))
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("ftp://example.org/", "only http and https"),
        ("gopher://127.0.0.1:25/", "only http and https"),
        ("http://user:pw@example.org/", "credentials"),
        ("", "empty"),
    ],
)
def test_refused_urls(url: str, message: str) -> None:
    with pytest.raises(UnsafeURLError, match=message):
        check_url(url)


def test_static_check_refuses_loopback_unless_allowed() -> None:
    strict = CrawlPolicy()
    for url in ("http://127.0.0.1:8000/", "http://localhost/", "http://[::1]/", "http://169.254.169.254/latest/"):
        with pytest.raises(UnsafeURLError, match=r"CONVEYOR_CRAWL_ALLOW_PRIVATE"):
            check_url_statically(url, strict)
    assert check_url_statically("http://127.0.0.1:8000/", ALLOW).host == "127.0.0.1"
    assert check_url_statically("https://example.org/", strict).host == "example.org"


def test_hostnames_are_resolved_and_every_address_checked() -> None:
    # A name resolving to a public and a private address is refused: one bad answer is enough.
    policy = CrawlPolicy(resolver=lambda host, port: ["93.184.216.34", "10.0.0.5"])
    with SafeFetcher(policy) as fetcher, pytest.raises(UnsafeURLError, match=r"resolves to 10.0.0.5, a private"):
        fetcher.get("http://docs.example.org/")


def test_normalised_urls() -> None:
    assert normalise_url("HTTP://Example.ORG:80/a?b=1#frag") == "http://example.org/a?b=1"
    assert normalise_url("https://example.org:443") == "https://example.org/"
    assert normalise_url("https://example.org:8443/x") == "https://example.org:8443/x"
    assert normalise_url("mailto:someone@example.org") is None
    assert normalise_url("javascript:alert(1)") is None


def run_crawl(site: Site, *, max_pages: int = 10, include_subpages: bool = True, policy: CrawlPolicy = ALLOW,
              start: str = "/") -> tuple[CrawlState, list[Page]]:
    pages: list[Page] = []

    def on_page(page: Page | None, state: CrawlState) -> None:
        if page is not None:
            pages.append(page)

    state = crawl(site.base + start, max_pages=max_pages, include_subpages=include_subpages, policy=policy,
                  on_page=on_page)
    return state, pages


def test_crawls_the_site_but_never_the_disallowed_page(site: Site) -> None:
    state, pages = run_crawl(site)
    paths = sorted(p.url.removeprefix(site.base) for p in pages)
    assert paths == ["/", "/about.html", "/events.html", "/history.html", "/members.html"]  # `?` and `#top` deduped
    assert site.fetched("/private.html") == 0
    assert state.skipped[site.base + "/private.html"] == "disallowed by robots.txt"
    assert all(site.fetched(p) <= 1 for p in ("/", "/about.html", "/history.html")), "each URL fetched once"
    home = next(p for p in pages if p.url == site.base + "/")
    assert home.title == "Home of the Lighthouse Society"
    assert "polish the great lens" in home.text
    assert "script text" not in home.text and "color: red" not in home.text


def test_max_pages_is_a_hard_limit(site: Site) -> None:
    state, pages = run_crawl(site, max_pages=2)
    assert len(pages) == 2 and state.pages == 2
    assert len(site.pages_fetched()) == 2


def test_without_subpages_only_the_start_page(site: Site) -> None:
    _state, pages = run_crawl(site, include_subpages=False)
    assert [p.url for p in pages] == [site.base + "/"]
    assert site.pages_fetched() == ["/"]


def test_loopback_is_refused_unless_allowed(site: Site) -> None:
    with pytest.raises(UnsafeURLError, match=r"127.0.0.1 resolves to 127.0.0.1, a loopback address"):
        run_crawl(site, policy=CrawlPolicy())
    assert site.requests == [], "nothing was sent to the refused address"


def test_localhost_name_is_resolved_then_refused(site: Site) -> None:
    with pytest.raises(UnsafeURLError, match=r"localhost resolves to .*loopback"):
        crawl(site.base.replace("127.0.0.1", "localhost"), max_pages=1, include_subpages=False,
              policy=CrawlPolicy(), on_page=lambda page, state: None)
    assert site.requests == []


@pytest.fixture
def trusted_site() -> Iterator[Site]:
    """A site on 127.0.0.2, trusted by the policy, that redirects to the (private) 127.0.0.1."""
    server, site = serve(lambda base: Site(base), host="127.0.0.2")
    yield site
    server.shutdown()
    server.server_close()


def test_redirect_to_a_private_address_is_refused(trusted_site: Site, site: Site) -> None:
    trusted_site.redirect_to = site.base + "/"
    policy = CrawlPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.2/32"),))
    with SafeFetcher(policy) as fetcher, pytest.raises(UnsafeURLError, match=r"127.0.0.1, a loopback address"):
        fetcher.get(trusted_site.base + "/redirect")
    assert trusted_site.requests == ["/redirect"]
    assert site.requests == [], "the private target was never contacted"
    with pytest.raises(CrawlError, match=r"no page .* could be fetched: .*127.0.0.1, a loopback address"):
        crawl(trusted_site.base + "/redirect", max_pages=3, include_subpages=True, policy=policy,
              on_page=lambda page, state: None)


def test_redirects_within_the_site_are_followed(site: Site) -> None:
    site.redirect_to = "/about.html"
    with SafeFetcher(ALLOW) as fetcher:
        fetched = fetcher.get(site.base + "/redirect")
    assert fetched.url == site.base + "/about.html"
    assert b"copper weather vanes" in fetched.body


def test_a_page_that_never_ends_is_cut_at_the_cap(site: Site) -> None:
    with pytest.raises(CrawlError, match=r"larger than the 262144-byte cap"):
        crawl(site.base + "/never-ends", max_pages=1, include_subpages=False,
              policy=CrawlPolicy(allow_private=True, max_page_bytes=256 * 1024), on_page=lambda page, state: None)


def test_non_html_is_skipped(site: Site) -> None:
    with SafeFetcher(ALLOW) as fetcher, pytest.raises(Exception, match=r"not HTML"):
        fetcher.get(site.base + "/report.bin")


def test_robots_5xx_means_do_not_crawl(site: Site) -> None:
    site.robots_status = 503
    with pytest.raises(CrawlError, match=r"robots.txt .* answered 503; not crawling"):
        run_crawl(site)
    assert site.pages_fetched() == []


def test_robots_404_means_everything_allowed(site: Site) -> None:
    site.robots_status = 404
    _state, pages = run_crawl(site, start="/private.html", include_subpages=False)
    assert [p.title for p in pages] == ["Private"]


def test_resume_from_a_checkpoint(site: Site) -> None:
    saved: list[dict[str, object]] = []

    def on_page(page: Page | None, state: CrawlState) -> None:
        saved.append(state.to_dict())

    crawl(site.base + "/", max_pages=2, include_subpages=True, policy=ALLOW, on_page=on_page)
    first = list(site.pages_fetched())
    checkpoint = CrawlState.from_dict(saved[-1])  # as if killed after two pages
    pages: list[str] = []
    crawl(site.base + "/", max_pages=5, include_subpages=True, policy=ALLOW, state=checkpoint,
          on_page=lambda page, state: pages.append(page.url) if page else None)
    assert len(first) == 2 and len(pages) == 3
    assert not set(first) & {p.removeprefix(site.base) for p in pages}, "no page fetched twice"


def test_a_page_that_drips_forever_hits_the_page_deadline(site: Site) -> None:
    policy = CrawlPolicy(allow_private=True, page_timeout_s=1.0, read_timeout_s=5.0)
    with SafeFetcher(policy) as fetcher, pytest.raises(Exception, match=r"took longer than 1s"):
        fetcher.get(site.base + "/drip")


def test_crawl_delay_of_robots_txt_is_honoured(site: Site) -> None:
    import time

    site.robots_extra = "Crawl-delay: 0.3\n"
    started = time.monotonic()
    _state, pages = run_crawl(site, max_pages=3)
    assert len(pages) == 3 and time.monotonic() - started >= 0.6


def test_ipv6_forms_of_loopback_are_refused_before_connecting() -> None:
    for url in ("http://[::ffff:127.0.0.1]:8000/", "http://[64:ff9b::7f00:1]/", "http://[::1]/"):
        with pytest.raises(UnsafeURLError, match=r"loopback"):
            check_url_statically(url, CrawlPolicy())
        with SafeFetcher(CrawlPolicy()) as fetcher, pytest.raises(UnsafeURLError, match=r"loopback"):
            fetcher.get(url)


def test_parse_page_honours_charset_and_robots_meta() -> None:
    from conveyor.ingest.crawl import parse_page
    from conveyor.ingest.fetch import Fetched

    latin = Fetched("http://x.test/", 200, "text/html",
                    "<html><body><p>Crème brûlée à la française</p></body></html>".encode("latin-1"), "iso-8859-1")
    assert parse_page(latin).text == "Crème brûlée à la française"
    hidden = Fetched("http://x.test/a", 200, "text/html",
                     b'<html><head><meta name="robots" content="noindex"></head><body><p>Secret</p>'
                     b'<a href="/b">b</a></body></html>')
    page = parse_page(hidden)
    assert page.text == "" and not page.index and page.links == ["http://x.test/b"]
    closed = Fetched("http://x.test/a", 200, "text/html",
                     b'<html><head><meta name="ConveyorBot" content="nofollow"><base href="/docs/"></head>'
                     b'<body><p>Open</p><a href="b">b</a></body></html>')
    page = parse_page(closed)
    assert page.text.startswith("Open") and page.links == []
    based = Fetched("http://x.test/a", 200, "text/html",
                    b'<html><head><base href="/docs/"></head><body><a href="b#frag">b</a></body></html>')
    assert parse_page(based).links == ["http://x.test/docs/b#frag"]
    plain = Fetched("http://x.test/t.txt", 200, "text/plain", b"just text")
    assert parse_page(plain).text == "just text" and parse_page(plain).links == []


@pytest.mark.parametrize(
    ("host", "message"),
    [("127.1", "loopback"), ("0x7f000001", "loopback"), ("2130706433", "loopback"), ("[::1]", "loopback"),
     ("0177.0.0.1", "invalid URL")],
)
def test_odd_spellings_of_loopback_are_refused(host: str, message: str) -> None:
    with SafeFetcher(CrawlPolicy()) as fetcher, pytest.raises(UnsafeURLError, match=message):
        fetcher.get(f"http://{host}:9/")


def test_localhost_with_a_trailing_dot_is_refused_statically() -> None:
    with pytest.raises(UnsafeURLError, match=r"loopback name"):
        check_url_statically("http://LocalHost./", CrawlPolicy())
