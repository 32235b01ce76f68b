"""Which addresses a webhook may be delivered to (the SSRF guard).

A name is resolved once per attempt, every address it resolves to must be public,
and the connection goes to the address that was checked: no second resolution, so a
name that answers a public address first and a private one next (DNS rebinding)
reaches nothing private. A lookup costs its caller at most the time it gives: the
system resolver has no timeout of its own that a caller can set.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services beyond the link-local 169.254.0.0/16 that is_global already
# refuses (AWS's IPv6 one is in fd00::/8, refused too; listed for the reader).
_METADATA = [ipaddress.ip_network("fd00:ec2::254/128"), ipaddress.ip_network("100.100.100.200/32")]
# Prefixes whose last 32 bits are an IPv4 address that a translator on the way (NAT64,
# SIIT) or the host itself (IPv4-compatible) sends the connection to: the well-known
# and the local-use NAT64 prefixes in their /96 form (RFC 6052, RFC 8215), IPv4-
# translated addresses (RFC 2765) and the deprecated IPv4-compatible ones (RFC 4291).
_TRANSLATED = [
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/96"),
    ipaddress.ip_network("::ffff:0:0:0/96"),
    ipaddress.ip_network("::/96"),
]
# The rest of the local-use NAT64 prefix places the IPv4 address elsewhere, at a
# length only the network's operator knows; it is not globally reachable (IANA).
_LOCAL_USE_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


class AddressRefused(Exception):
    """The URL's host is not a public address (or does not resolve)."""


class NameDoesNotResolve(AddressRefused):
    """The URL's host name has no address (a typo, or a name not yet published)."""


class HostNotValid(AddressRefused):
    """The URL's host is no host name that IDNA can write in ASCII."""


class NameLookupTimedOut(NameDoesNotResolve):
    """The resolver did not answer for the URL's host name in the time given."""


# Each lookup runs on a daemon thread of its own, so its caller can stop waiting: a
# lookup that hangs keeps its thread until the system resolver gives up (resolv.conf's
# timeout and attempts), and never holds up the process's exit. A process makes one
# lookup at a time (a sync gunicorn worker, a job worker) and waits at most 5 s for
# it, so hanging lookups pile up only as fast as one per few seconds; the cap stops a
# resolver that never gives up from piling up threads without end. Past it a lookup
# waits for a slot, within its own time. A forked process (a job or gunicorn worker)
# starts with all of its slots: none of its parent's threads came with it.
_LOOKUP_THREADS = 32
_slots = threading.BoundedSemaphore(_LOOKUP_THREADS)


def _fresh_slots() -> None:
    global _slots
    _slots = threading.BoundedSemaphore(_LOOKUP_THREADS)


os.register_at_fork(after_in_child=_fresh_slots)


def _addresses(host: str, port: int, timeout: float) -> list:
    """socket.getaddrinfo(host, port), or NameLookupTimedOut after ``timeout`` seconds."""
    ends = time.monotonic() + timeout
    slots = _slots
    if not slots.acquire(timeout=timeout):
        raise NameLookupTimedOut(f"{host} did not resolve within {timeout:g} s")
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            outcome["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except BaseException as error:  # handed to the caller
            outcome["error"] = error
        finally:
            slots.release()
            done.set()

    threading.Thread(target=lookup, name="webhook-dns", daemon=True).start()
    if not done.wait(max(0.0, ends - time.monotonic())):
        raise NameLookupTimedOut(f"{host} did not resolve within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["infos"]


def host_ascii(host: str) -> str:
    """The host as DNS, TLS and the Host header carry it: an internationalized name in
    its IDNA (punycode) form, mapped as browsers do (UTS #46); ASCII hosts unchanged."""
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except UnicodeError as error:  # idna.IDNAError and its kinds
        raise HostNotValid(f"{host} is not a valid host name") from error


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # IPv4-mapped (::ffff:a.b.c.d), 6to4 (2002::/16), Teredo and the translated forms
    # carry an IPv4 address that the network may route to.
    if any(address in network for network in _TRANSLATED):
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def address_is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and not address_is_public(embedded):
            return False
        if embedded is None and address in _LOCAL_USE_NAT64:
            return False
    if any(address in network for network in _METADATA if network.version == address.version):
        return False
    return address.is_global and not address.is_multicast and not address.is_unspecified


@dataclass(frozen=True)
class Destination:
    host: str
    port: int
    address: str


def resolve(host: str, port: int, *, allow_private: bool, timeout: float) -> Destination:
    """The one address a delivery connects to, checked, with the host in ASCII;
    AddressRefused otherwise (NameLookupTimedOut after ``timeout`` seconds)."""
    host = host_ascii(host)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        candidates = [literal]
    else:
        try:
            infos = _addresses(host, port, timeout)
        except (socket.gaierror, UnicodeError) as error:
            raise NameDoesNotResolve(f"{host} does not resolve") from error
        candidates = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not candidates:
        raise NameDoesNotResolve(f"{host} does not resolve")
    # Every address the name has must be public: a name with one private address among
    # public ones is refused rather than delivered to whichever answers.
    if not allow_private and not all(address_is_public(address) for address in candidates):
        raise AddressRefused(f"{host} resolves to an address that is not public")
    return Destination(host=host, port=port, address=str(candidates[0]))
