"""Fetching one URL safely: which addresses the crawler may reach, and a GET that checks every hop.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from conveyor.ingest.errors import UnsafeURLError
from conveyor.netguard import Address, Network, address_refusal

__all__ = [
    "Address", "CrawlPolicy", "FetchError", "Fetched", "Network", "SafeFetcher", "address_refusal", "check_url",
    "check_url_statically",
]

USER_AGENT = "ConveyorBot/0.1"
MAX_PAGE_BYTES = 2 * 1024 * 1024
PAGE_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
MAX_REDIRECTS = 5
HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("text/plain",)
_REDIRECTS = {301, 302, 303, 307, 308}
Resolver = Callable[[str, int], list[str]]


class FetchError(Exception):
    """One page could not be fetched; the crawl goes on without it."""


def _system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {host!r}: {exc.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


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
    host = parsed.host.rstrip(".").lower()
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
        self._clients: dict[str, httpx.Client] = {}

    def _client(self, host: str) -> httpx.Client:
        """One client (connection pool) per host name: connections are pooled by address, and a TLS connection
        made for one name (its SNI, its certificate) must never carry requests for another name on that address."""
        client = self._clients.get(host)
        if client is None:
            policy = self.policy
            timeout = httpx.Timeout(
                connect=policy.connect_timeout_s, read=policy.read_timeout_s, write=policy.read_timeout_s, pool=5.0
            )
            # trust_env=False: no proxy from the environment could route around the address checks.
            client = httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False, verify=policy.verify)
            self._clients[host] = client
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

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
            client = self._client(target.host)
            request = client.build_request("GET", target.copy_with(host=ip), headers=headers, extensions=extensions)
            try:
                response = client.send(request, stream=True)
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

