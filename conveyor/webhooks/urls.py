"""Where a webhook may be sent: http or https, a host, no credentials, and (unless CONVEYOR_WEBHOOK_ALLOW_PRIVATE)
only public addresses, checked after DNS resolution: at subscription time and again at every send, which then goes
to the address that was checked (`netguard`)."""

from __future__ import annotations

import httpx

from conveyor.errors import InvalidArgumentsError
from conveyor.netguard import Address, address_refusal, is_loopback_name, resolve

ALLOW_HINT = "set CONVEYOR_WEBHOOK_ALLOW_PRIVATE=true to allow it"


class UnsafeWebhookURLError(InvalidArgumentsError):
    """The webhook URL is not allowed."""

    retryable = False  # at send time: whether a later attempt may succeed (a name that did not resolve, say)


class UnresolvedWebhookURLError(UnsafeWebhookURLError):
    """The webhook URL's host does not resolve (now)."""

    retryable = True


def parse_url(url: str) -> httpx.URL:
    """The URL if its form is acceptable, else UnsafeWebhookURLError saying why (no DNS)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in {"http", "https"}:
        raise UnsafeWebhookURLError(f"url: only http and https URLs are allowed, not {url[:100]!r}")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise UnsafeWebhookURLError(f"url: invalid URL {url[:100]!r}: {exc}") from None
    if not parsed.host:
        raise UnsafeWebhookURLError(f"url: {url[:100]!r} names no host")
    if parsed.userinfo:
        raise UnsafeWebhookURLError("url: URLs with credentials (user:password@) are not allowed")
    return parsed


def checked_address(url: httpx.URL, allow_private: bool) -> Address:
    """The address to connect to: every address the host resolves to must be allowed."""
    host = url.host
    if not allow_private and is_loopback_name(host):
        raise UnsafeWebhookURLError(f"url: {host} is a loopback name; {ALLOW_HINT}")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = resolve(host, port)
    except OSError as exc:
        raise UnresolvedWebhookURLError(f"url: cannot resolve {host!r}: {exc}") from None
    if not addresses:
        raise UnresolvedWebhookURLError(f"url: {host} resolves to no address")
    if not allow_private:
        for ip in addresses:
            reason = address_refusal(ip)
            if reason:
                shown = host if str(ip) == host else f"{host} resolves to {ip}, which"
                raise UnsafeWebhookURLError(f"url: {shown} is {reason}; {ALLOW_HINT}")
    return addresses[0]


def check_url(url: str, allow_private: bool) -> str:
    """A subscription's URL, refused (UnsafeWebhookURLError, a 422) unless it may be reached."""
    checked_address(parse_url(url), allow_private)
    return url
