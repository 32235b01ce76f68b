import ipaddress
import socket
import time

import pytest

from webhooks import addresses
from webhooks.addresses import (
    AddressRefused,
    NameDoesNotResolve,
    NameLookupTimedOut,
    address_is_public,
    resolve,
)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata (link-local)
        "100.100.100.200",  # Alibaba Cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",  # multicast
        "239.255.255.250",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
        "::ffff:10.1.2.3",
        "2002:7f00:1::",  # 6to4 around 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 around 169.254.169.254
        "64:ff9b::a9fe:a9fe",  # NAT64 (well-known prefix) to 169.254.169.254
        "64:ff9b::a00:1",  # NAT64 to 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 to 127.0.0.1
        "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 to 169.254.169.254
        "64:ff9b:1:a9fe:a9:fe00::",  # local-use NAT64, /64 form: no telling
        "::ffff:0:a9fe:a9fe",  # SIIT (IPv4-translated) to 169.254.169.254
        "::ffff:0:a00:1",
        "::a9fe:a9fe",  # IPv4-compatible (deprecated) 169.254.169.254
        "::7f00:1",
    ],
)
def test_address_not_public_is_refused(address):
    assert not address_is_public(ipaddress.ip_address(address))
    with pytest.raises(AddressRefused):
        resolve(address, 443, allow_private=False, timeout=5)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.215.14",
        "8.8.8.8",
        "2606:4700:4700::1111",
        "64:ff9b::5db8:d70e",  # NAT64 to 93.184.215.14
        "64:ff9b:1::808:808",  # local-use NAT64 to 8.8.8.8
    ],
)
def test_public_address_is_accepted(address):
    assert address_is_public(ipaddress.ip_address(address))
    assert resolve(address, 443, allow_private=False, timeout=5).address == address


def _getaddrinfo(*addresses):
    def fake(host, port, *args, **kwargs):
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return fake


def test_name_with_any_private_address_is_refused(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _getaddrinfo("93.184.215.14", "127.0.0.1"))
    with pytest.raises(AddressRefused):
        resolve("mixed.example", 443, allow_private=False, timeout=5)


def test_name_resolves_once_and_the_checked_address_is_the_destination(monkeypatch):
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])
    calls = []

    def rebinding(host, port, *args, **kwargs):
        calls.append(host)
        return _getaddrinfo(*next(answers))(host, port)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    destination = resolve("rebind.example", 443, allow_private=False, timeout=5)
    assert destination.address == "93.184.215.14"
    assert calls == ["rebind.example"]
    # The next resolution (a later attempt) answers loopback: refused, not followed.
    with pytest.raises(AddressRefused):
        resolve("rebind.example", 443, allow_private=False, timeout=5)


def test_name_that_does_not_resolve_is_refused(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(NameDoesNotResolve):
        resolve("nowhere.invalid", 443, allow_private=False, timeout=5)


def test_private_addresses_allowed_when_configured():
    assert resolve("127.0.0.1", 8080, allow_private=True, timeout=5).address == "127.0.0.1"


def test_a_lookup_that_hangs_is_given_up_after_its_time(hanging_resolver):
    started = time.monotonic()
    with pytest.raises(NameLookupTimedOut, match=r"slow\.example did not resolve within 0\.5 s"):
        resolve("slow.example", 443, allow_private=False, timeout=0.5)
    elapsed = time.monotonic() - started

    assert 0.45 < elapsed < 1.5
    assert hanging_resolver == ["slow.example"]


def test_lookups_past_the_hanging_ones_wait_for_a_slot_within_their_own_time(
    hanging_resolver,
):
    # Every lookup thread hangs; the next lookup waits for one, never starts, and
    # still ends at its own time.
    for n in range(addresses._LOOKUP_THREADS):
        with pytest.raises(NameLookupTimedOut):
            resolve(f"slow{n}.example", 443, allow_private=False, timeout=0.05)
    started = time.monotonic()
    with pytest.raises(NameLookupTimedOut):
        resolve("next.example", 443, allow_private=False, timeout=0.3)

    assert time.monotonic() - started < 1.5
    assert "next.example" not in hanging_resolver
