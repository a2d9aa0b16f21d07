"""Which addresses outbound requests may reach (the crawler's and the webhooks'): the shared SSRF policy.

Refused by default: loopback, private, link-local (cloud metadata), CGNAT, multicast, reserved and other non-global
addresses, also when hidden in IPv4-mapped, NAT64, 6to4 or Teredo IPv6 forms. Callers check every address a host
resolves to, then connect to the address they checked (so a DNS answer that changes in between cannot redirect them).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_ALWAYS_BLOCKED = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("192.0.0.0/24"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` names (a literal address is itself); OSError when it does not resolve."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found = dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos)
    return [ipaddress.ip_address(a) for a in found]


def static_refusal(url: str) -> str | None:
    """Why a URL must not be reached, as far as can be told without DNS: a literal refused address, or a loopback
    name (None: nothing found; the address a name resolves to is checked when it is used)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return "is not a valid URL"
    if is_loopback_name(host):
        return f"names {host}, a loopback name"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    reason = address_refusal(ip)
    return f"names {ip}, {reason}" if reason else None


def is_loopback_name(host: str) -> bool:
    host = host.rstrip(".").lower()
    return host == "localhost" or host.endswith(".localhost")


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
    """Why outbound requests must not reach this address by default (None: it is a public unicast address)."""
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
