"""client_ip: X-Forwarded-For is believed only from our own proxies
(LITHTRIX_TRUSTED_PROXIES), read from the right, skipping their hops."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from lithtrix.core.http import client_ip

PROXIES = ["10.0.0.0/8", "2001:db8:ff::/48"]


def ip_of(peer: str, forwarded_for: str | None = None) -> str | None:
    request = RequestFactory().get("/", REMOTE_ADDR=peer)
    if forwarded_for is not None:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client_ip(request)


@pytest.fixture
def trusted(settings):
    settings.LITHTRIX_TRUSTED_PROXIES = PROXIES


def test_without_trusted_proxies_forwarded_for_is_ignored(settings):
    settings.LITHTRIX_TRUSTED_PROXIES = []
    assert ip_of("10.0.0.1", "203.0.113.9") == "10.0.0.1"


@pytest.mark.parametrize(
    ("peer", "forwarded_for"),
    [
        ("198.51.100.7", "127.0.0.1"),
        ("198.51.100.7", "203.0.113.9, 10.0.0.1"),
        ("2001:db8:1::5", "127.0.0.1"),
        ("127.0.0.2", "10.0.0.1"),
    ],
    ids=["v4-spoof", "v4-spoofed-chain", "v6-spoof", "loopback-not-listed"],
)
def test_a_peer_that_is_not_a_proxy_is_the_client_whatever_it_forwards(
    trusted, peer, forwarded_for
):
    assert ip_of(peer, forwarded_for) == peer


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("10.0.0.1", "203.0.113.9", "203.0.113.9"),
        # The client's own entries are to the left of the one our proxy added.
        ("10.0.0.1", "127.0.0.1, 10.9.9.9, 203.0.113.9", "203.0.113.9"),
        # Two proxies of ours: a load balancer, then nginx.
        ("10.0.0.1", "192.0.2.1, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        ("10.0.0.1", " 203.0.113.9 ,10.0.0.2 ", "203.0.113.9"),
        ("2001:db8:ff::1", "2001:db8::7", "2001:db8::7"),
        ("2001:db8:ff::1", "2001:DB8:0:0::7", "2001:db8::7"),
        ("2001:db8:ff::1", "203.0.113.9, 2001:db8:ff::2", "203.0.113.9"),
        ("::ffff:10.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.1", "::ffff:203.0.113.9", "203.0.113.9"),
        ("10.0.0.1", "203.0.113.9:4711", "203.0.113.9"),
        ("10.0.0.1", "[2001:db8::7]:4711", "2001:db8::7"),
    ],
    ids=[
        "v4",
        "v4-spoofed-chain",
        "two-proxies",
        "spaces",
        "v6",
        "v6-normalised",
        "v6-proxy-v4-client",
        "v4-mapped-peer",
        "v4-mapped-client",
        "v4-port",
        "v6-port",
    ],
)
def test_a_proxy_peer_forwards_the_first_address_it_does_not_trust(
    trusted, peer, forwarded_for, client
):
    assert ip_of(peer, forwarded_for) == client


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        (None, "10.0.0.1"),
        ("", "10.0.0.1"),
        ("not-an-address", "10.0.0.1"),
        ("203.0.113.9, unknown", "10.0.0.1"),
        ("unknown, 10.0.0.3", "10.0.0.3"),
        # Only proxies of ours: the farthest one is all we know.
        ("10.0.0.3, 10.0.0.2", "10.0.0.3"),
    ],
    ids=["none", "empty", "garbage", "garbage-last", "garbage-behind-proxy", "all-proxies"],
)
def test_a_proxy_peer_without_a_usable_client_address_is_the_last_one_known(
    trusted, forwarded_for, client
):
    assert ip_of("10.0.0.1", forwarded_for) == client


def test_a_long_header_is_read_the_same(trusted):
    spoofed = ", ".join(f"198.51.100.{n}" for n in range(100))
    assert len(spoofed) > 256
    for _ in range(2):
        assert ip_of("10.0.0.1", f"{spoofed}, 203.0.113.9, 10.0.0.2") == "203.0.113.9"


def test_no_peer_address_is_none(trusted):
    assert client_ip(RequestFactory().get("/", REMOTE_ADDR="")) is None
