"""Small request helpers shared by the apps."""

from __future__ import annotations

import ipaddress
from functools import cache, lru_cache

from django.conf import settings
from django.http import HttpRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(request: HttpRequest) -> str | None:
    """The client's IP address.

    REMOTE_ADDR, unless that peer is one of our proxies (LITHTRIX_TRUSTED_PROXIES):
    then X-Forwarded-For read from the right, past the hops our proxies added, to
    the first address none of them is; the farthest proxy of ours when there is
    none. Anyone can send X-Forwarded-For, so a peer that is not ours is the
    client whatever it says.
    """
    peer = request.META.get("REMOTE_ADDR") or None
    proxies = settings.LITHTRIX_TRUSTED_PROXIES
    if not proxies or peer is None:
        return peer
    forwarded_for = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if len(forwarded_for) > _CACHED_HEADER_LENGTH:
        return _client_behind.__wrapped__(peer, forwarded_for, tuple(proxies))
    return _client_behind(peer, forwarded_for, tuple(proxies))


# Cached: the same clients come back through the same proxies (/v1/authorize is
# the hot path); a miss costs a few address parses. Long headers are not kept (an
# 8 kB one per entry would hold 32 MB).
_CACHED_HEADER_LENGTH = 256


@lru_cache(maxsize=4096)
def _client_behind(peer: str, forwarded_for: str, proxy_values: tuple[str, ...]) -> str:
    proxies = trusted_networks(proxy_values)
    nearest = parse_address(peer)
    if nearest is None or not _trusted(nearest, proxies):
        return peer
    for hop in reversed(forwarded_for.split(",")):
        if not hop.strip():
            continue
        address = parse_address(hop)
        if address is None:
            # Not written by a proxy of ours: what lies beyond it is the client's word.
            break
        nearest = address
        if not _trusted(address, proxies):
            break
    return str(nearest)


@cache
def trusted_networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    """The networks in LITHTRIX_TRUSTED_PROXIES; a bad one raises ValueError."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def parse_address(text: str) -> Address | None:
    """An address as proxies write it: bare, ``v4:port`` or ``[v6]:port``; an
    IPv4-mapped IPv6 address is its IPv4 one (so both spellings share a bucket)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: tuple[Network, ...]) -> bool:
    return any(address in network for network in proxies)


def django_request(request: HttpRequest) -> HttpRequest:
    """The Django request itself, whether given it or DRF's Request that wraps it."""
    return getattr(request, "_request", request)


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
