"""A small, SSRF-safe website crawler: same-site links, robots.txt, size and time caps, resumable. Fetching, and
which addresses may be reached, is `conveyor.ingest.fetch`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from conveyor.ingest.errors import CrawlError, UnsafeURLError
from conveyor.ingest.fetch import (
    HTML_TYPES,
    USER_AGENT,
    CrawlPolicy,
    Fetched,
    FetchError,
    SafeFetcher,
    check_url,
)

MAX_PAGES_LIMIT = 1000
MAX_PAGE_CHARS = 500_000
MAX_CRAWL_DELAY_S = 10.0  # a robots.txt Crawl-delay is honoured up to this
MAX_SEEN_PER_PAGE = 50  # URLs remembered per page allowed: bounds the checkpoint of a link-heavy site

def normalise_url(url: str) -> str | None:
    """Canonical form for deduplication: lower-case scheme and host, no default port, no fragment, path `/` at
    least; None for anything but http(s)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"} or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return None
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    path = parts.path or "/"
    return urlunsplit((scheme, host, path, parts.query, ""))


def site_of(url: str) -> tuple[str, int | None]:
    """Same site: the host without a leading `www.`, and the port (http and https of one host are one site)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().removeprefix("www.")
    port = parts.port
    if port in (80, 443):
        port = None
    return host, port



@dataclass(frozen=True, slots=True)
class Page:
    url: str
    title: str
    text: str
    links: list[str]
    index: bool = True  # false: `<meta name="robots" content="noindex">`, its text is not stored


def parse_page(fetched: Fetched, max_chars: int = MAX_PAGE_CHARS) -> Page:
    """Title, visible text and links of an HTML page (or the text of a plain-text one). A robots meta tag is
    honoured: `noindex` keeps the text out, `nofollow` the links."""
    raw = fetched.text()
    if fetched.content_type not in HTML_TYPES:
        return Page(fetched.url, fetched.url, raw[:max_chars], [])
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(raw)
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node is not None else ""
    directives: set[str] = set()
    for meta in tree.css("meta[name]"):
        if (meta.attributes.get("name") or "").strip().lower() in {"robots", USER_AGENT.split("/")[0].lower()}:
            content = (meta.attributes.get("content") or "").lower()
            directives.update(d.strip() for d in content.split(","))
    base = fetched.url
    base_node = tree.css_first("base[href]")
    if base_node is not None and base_node.attributes.get("href"):
        base = urljoin(fetched.url, base_node.attributes["href"] or "")
    links: list[str] = []
    if not directives & {"nofollow", "none"}:
        links = [urljoin(base, a.attributes.get("href") or "") for a in tree.css("a[href]")]
    tree.strip_tags(["script", "style", "noscript", "template", "svg", "iframe", "head"])
    body = tree.body
    text = body.text(separator="\n", strip=True) if body is not None else ""
    index = not directives & {"noindex", "none"}
    return Page(fetched.url, title or fetched.url, text[:max_chars] if index else "", links, index)


class Robots:
    """robots.txt of one origin (protego). 4xx: everything allowed; 5xx or unreachable: nothing (RFC 9309)."""

    def __init__(self, fetcher: SafeFetcher, origin: str, user_agent: str) -> None:
        from protego import Protego

        self.user_agent = user_agent
        try:
            fetched = fetcher.get(f"{origin}/robots.txt", accept=None)
        except FetchError as exc:  # an UnsafeURLError (a refused address) goes up as it is
            raise CrawlError(f"robots.txt of {origin} is unreachable ({exc}); not crawling") from None
        if fetched.status >= 500:
            raise CrawlError(f"robots.txt of {origin} answered {fetched.status}; not crawling")
        text = fetched.body.decode("utf-8", errors="replace") if fetched.status < 400 else ""
        self.rules = Protego.parse(text)
        delay = self.rules.crawl_delay(user_agent)
        self.delay_s = min(float(delay), MAX_CRAWL_DELAY_S) if delay else 0.0

    def allows(self, url: str) -> bool:
        return bool(self.rules.can_fetch(url, self.user_agent))


@dataclass
class CrawlState:
    """The checkpoint: saved with each page's chunks, so a killed crawl continues where it stopped."""

    frontier: list[str]
    seen: list[str]
    pages: int = 0
    attempts: int = 0
    next_chunk: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "frontier": self.frontier,
            "seen": self.seen,
            "pages": self.pages,
            "attempts": self.attempts,
            "next_chunk": self.next_chunk,
            "skipped": self.skipped,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CrawlState:
        return cls(
            frontier=list(data["frontier"]),
            seen=list(data["seen"]),
            pages=int(data["pages"]),
            attempts=int(data.get("attempts", 0)),
            next_chunk=int(data.get("next_chunk", 0)),
            skipped=dict(data.get("skipped", {})),
        )


OnPage = Callable[[Page | None, CrawlState], None]


def crawl(
    start_url: str,
    *,
    max_pages: int,
    include_subpages: bool,
    policy: CrawlPolicy,
    on_page: OnPage,
    state: CrawlState | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> CrawlState:
    """Fetch up to `max_pages` pages of the site of `start_url`, breadth first. `on_page` gets each page (or None for
    a page that failed) with the state to checkpoint; a `state` from a checkpoint resumes the crawl."""
    start = normalise_url(str(check_url(start_url)))
    if start is None:
        raise UnsafeURLError(f"cannot crawl {start_url!r}")
    limit = max_pages if include_subpages else 1
    state = state or CrawlState(frontier=[start], seen=[start])
    seen = set(state.seen)
    site = site_of(start)
    with SafeFetcher(policy) as fetcher:
        robots = _robots(fetcher, start, policy)

        def allowed(url: str) -> bool:
            return site_of(url) == site and robots.allows(url)

        while state.frontier and state.pages < limit and state.attempts < limit * 5:
            if should_stop():
                break
            url = state.frontier.pop(0)
            if not robots.allows(url):
                state.skipped[url] = "disallowed by robots.txt"
                continue
            if state.attempts and robots.delay_s:
                time.sleep(robots.delay_s)
            state.attempts += 1
            try:
                fetched = fetcher.get(url, allowed=allowed)
                if fetched.status >= 400:
                    raise FetchError(f"{url}: HTTP {fetched.status}")
            except (FetchError, UnsafeURLError) as exc:
                state.skipped[url] = str(exc)
                on_page(None, state)
                continue
            page = parse_page(fetched)
            if include_subpages:
                _extend(state, seen, page.links, site, limit * MAX_SEEN_PER_PAGE)
            state.pages += 1
            on_page(page, state)
    if state.pages == 0 and not should_stop():
        reasons = "; ".join(f"{reason}" for reason in list(state.skipped.values())[:3]) or "nothing to fetch"
        raise CrawlError(f"no page of {start} could be fetched: {reasons}")
    return state


def _robots(fetcher: SafeFetcher, start: str, policy: CrawlPolicy) -> Robots:
    parts = urlsplit(start)
    return Robots(fetcher, f"{parts.scheme}://{parts.netloc}", policy.user_agent)


def _extend(
    state: CrawlState, seen: set[str], links: Iterable[str], site: tuple[str, int | None], max_seen: int
) -> None:
    for link in links:
        if len(seen) >= max_seen:
            return
        url = normalise_url(link)
        if url is None or url in seen or site_of(url) != site:
            continue
        seen.add(url)
        state.seen.append(url)
        state.frontier.append(url)
