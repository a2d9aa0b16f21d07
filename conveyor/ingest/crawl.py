"""A small, SSRF-safe website crawler: same-site links, robots.txt, size and time caps, resumable.

Every URL, the start, each redirect hop and each subpage, is checked before any connection: http or https only, the
host resolved, and every address it resolves to must be public (no loopback, private, link-local, CGNAT, multicast,
metadata or reserved addresses, also not hidden in IPv4-mapped, NAT64, 6to4 or Teredo IPv6 forms) unless
`allow_private`. The connection then goes to the address that was checked (the URL's host is replaced by it; the
Host header and TLS SNI keep the name), so a DNS answer that changes between check and connect cannot redirect us.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from conveyor.ingest.errors import CrawlError, UnsafeURLError

USER_AGENT = "ConveyorBot/0.1"
MAX_PAGE_BYTES = 2 * 1024 * 1024
PAGE_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
MAX_REDIRECTS = 5
MAX_PAGES_LIMIT = 1000
MAX_PAGE_CHARS = 500_000
MAX_CRAWL_DELAY_S = 10.0  # a robots.txt Crawl-delay is honoured up to this
MAX_SEEN_PER_PAGE = 50  # URLs remembered per page allowed: bounds the checkpoint of a link-heavy site
HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("text/plain",)
_REDIRECTS = {301, 302, 303, 307, 308}
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_ALWAYS_BLOCKED = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("192.0.0.0/24"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


class FetchError(Exception):
    """One page could not be fetched; the crawl goes on without it."""


def _system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {host!r}: {exc.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def address_refusal(ip: Address) -> str | None:
    """Why the crawler must not connect to this address by default (None: it is a public unicast address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = address_refusal(inner)
            return f"{reason} (inside the IPv6 address {ip})" if reason else None
        if ip.scope_id:
            return "a scoped IPv6 address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if ip.is_unspecified:
        return "the unspecified address"
    if any(ip in net for net in _ALWAYS_BLOCKED if net.version == ip.version):
        return "a shared (CGNAT) or IETF-reserved address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a non-global address"
    return None


@dataclass(frozen=True, slots=True)
class CrawlPolicy:
    allow_private: bool = False
    allowed_networks: tuple[Network, ...] = ()  # trusted exceptions, e.g. one internal documentation host
    max_page_bytes: int = MAX_PAGE_BYTES
    page_timeout_s: float = PAGE_TIMEOUT_S
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    read_timeout_s: float = READ_TIMEOUT_S
    max_redirects: int = MAX_REDIRECTS
    user_agent: str = USER_AGENT
    resolver: Resolver = field(default=_system_resolver)
    verify: ssl.SSLContext | bool = True  # TLS verification (a context trusting a private CA, say)

    def refusal(self, ip: Address) -> str | None:
        if self.allow_private or any(ip in net for net in self.allowed_networks if net.version == ip.version):
            return None
        return address_refusal(ip)


def check_url(url: str) -> httpx.URL:
    """A URL the crawler may try (http or https, a host, no credentials), or UnsafeURLError saying why not."""
    if not isinstance(url, str) or not url.strip():
        raise UnsafeURLError("the URL is empty")
    scheme = url.strip().split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in {"http", "https"}:
        raise UnsafeURLError(f"only http and https URLs can be crawled, not {scheme + ':' if scheme else url!r}")
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, ValueError) as exc:
        raise UnsafeURLError(f"invalid URL {url!r}: {exc}") from None
    if not parsed.host:
        raise UnsafeURLError(f"the URL {url!r} names no host")
    if parsed.userinfo:
        raise UnsafeURLError("URLs with credentials (user:password@) are not crawled")
    return parsed


def check_url_statically(url: str, policy: CrawlPolicy) -> httpx.URL:
    """What can be refused without DNS: the scheme, and literal or `localhost` hosts (at source creation)."""
    parsed = check_url(url)
    host = parsed.host
    if policy.allow_private:
        return parsed
    if host == "localhost" or host.endswith(".localhost"):
        raise UnsafeURLError(f"{host} is a loopback name; set CONVEYOR_CRAWL_ALLOW_PRIVATE=true to crawl it")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return parsed
    reason = policy.refusal(ip)
    if reason:
        raise UnsafeURLError(f"{host} is {reason}; set CONVEYOR_CRAWL_ALLOW_PRIVATE=true to crawl it")
    return parsed


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
class Fetched:
    url: str
    status: int
    content_type: str
    body: bytes
    charset: str | None = None

    def text(self) -> str:
        """The body decoded by its declared charset (UTF-8 with replacement when none or unknown)."""
        from conveyor.ingest.extract import decode_text

        if self.charset and self.charset.lower().replace("_", "-") not in {"utf-8", "utf8"}:
            try:
                return self.body.decode(self.charset, errors="replace")
            except LookupError:
                pass
        return decode_text(self.body)


class SafeFetcher:
    """GETs one URL at a time under the policy; redirects followed by hand, each hop checked."""

    def __init__(self, policy: CrawlPolicy) -> None:
        self.policy = policy
        timeout = httpx.Timeout(
            connect=policy.connect_timeout_s, read=policy.read_timeout_s, write=policy.read_timeout_s, pool=5.0
        )
        # trust_env=False: no proxy from the environment could route around the address checks.
        self.client = httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False, verify=policy.verify)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> SafeFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def checked_address(self, url: httpx.URL) -> str:
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in self.policy.resolver(host, port)]
        if not addresses:
            raise FetchError(f"{host} resolves to no address")
        for ip in addresses:
            reason = self.policy.refusal(ip)
            if reason:
                raise UnsafeURLError(
                    f"{host} resolves to {ip}, {reason}; refused (CONVEYOR_CRAWL_ALLOW_PRIVATE=true allows it)"
                )
        return str(addresses[0])

    def get(
        self,
        url: str,
        *,
        accept: tuple[str, ...] | None = HTML_TYPES + TEXT_TYPES,
        allowed: Callable[[str], bool] | None = None,
    ) -> Fetched:
        """The final response after redirects. UnsafeURLError for a refused hop; FetchError for other failures."""
        current = url
        for _hop in range(self.policy.max_redirects + 1):
            target = check_url(current)
            ip = self.checked_address(target)
            if allowed is not None and current != url and not allowed(current):
                raise FetchError(f"redirect to {current} is disallowed by robots.txt or leaves the site")
            headers = {
                "Host": target.netloc.decode("ascii"),
                "User-Agent": self.policy.user_agent,
                "Accept": "text/html,application/xhtml+xml,text/plain;q=0.8,*/*;q=0.1",
            }
            extensions: dict[str, Any] = {"sni_hostname": target.host} if target.scheme == "https" else {}
            request = self.client.build_request(
                "GET", target.copy_with(host=ip), headers=headers, extensions=extensions
            )
            try:
                response = self.client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise FetchError(f"{current}: {type(exc).__name__}: {exc or 'no detail'}") from None
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(f"{current}: redirect without a Location header")
                    current = str(target.join(location))
                    continue
                content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if response.status_code >= 400:
                    return Fetched(current, response.status_code, content_type, b"")
                if accept is not None and content_type not in accept:
                    raise FetchError(f"{current}: skipped, content type {content_type or 'unknown'!r} is not HTML")
                body = self._body(current, response)
                return Fetched(current, response.status_code, content_type, body, response.charset_encoding)
            finally:
                response.close()
        raise FetchError(f"{url}: more than {self.policy.max_redirects} redirects")

    def _body(self, url: str, response: httpx.Response) -> bytes:
        cap = self.policy.max_page_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(f"{url}: page of {declared} bytes is larger than the {cap}-byte cap")
        deadline = time.monotonic() + self.policy.page_timeout_s
        parts: list[bytes] = []
        size = 0
        try:
            for part in response.iter_bytes():
                size += len(part)
                if size > cap:
                    raise FetchError(f"{url}: page larger than the {cap}-byte cap (it may never end)")
                if time.monotonic() > deadline:
                    raise FetchError(f"{url}: page took longer than {self.policy.page_timeout_s:g}s to download")
                parts.append(part)
        except httpx.HTTPError as exc:
            raise FetchError(f"{url}: {type(exc).__name__} while reading: {exc or 'no detail'}") from None
        return b"".join(parts)


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
