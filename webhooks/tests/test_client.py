import socket
import time

import pytest

from testing.servers import BlackHole
from webhooks import client


def test_post_delivers_body_and_headers_to_the_url(receiver):
    outcome = client.post(receiver.url, body=b'{"a":1}', headers={"webhook-id": "evt_1"})

    assert outcome == client.Outcome(succeeded=True, status_code=200, error="")
    (request,) = receiver.received
    assert request.path == "/hook?agent=1"
    assert request.body == b'{"a":1}'
    assert request.headers["webhook-id"] == "evt_1"
    assert request.headers["host"] == receiver.url.split("/")[2]


@pytest.mark.parametrize(
    ("name", "ascii_name"),
    [
        ("bücher.test", "xn--bcher-kva.test"),
        ("Straße.test", "xn--strae-oqa.test"),
        ("пример.испытание", "xn--e1afmkfd.xn--80akhbyknj4f"),
    ],
)
def test_post_sends_an_internationalized_host_in_its_idna_form(
    receiver, monkeypatch, name, ascii_name
):
    port = int(receiver.url.split(":")[2].split("/")[0])
    resolved = []

    def loopback(host, *args, **kwargs):
        resolved.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", loopback)
    outcome = client.post(f"http://{name}:{port}/hook", body=b"{}", headers={})

    assert outcome == client.Outcome(succeeded=True, status_code=200, error="")
    # The name once, in ASCII; then the connection goes to the address checked.
    assert resolved == [ascii_name, "127.0.0.1"]
    (request,) = receiver.received
    assert request.headers["host"] == f"{ascii_name}:{port}"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_post_does_not_follow_redirects(receiver, status):
    receiver.statuses = [status]
    receiver.extra_headers = {"Location": "http://169.254.169.254/latest/meta-data/"}

    outcome = client.post(receiver.url, body=b"{}", headers={})

    assert outcome.succeeded is False
    assert outcome.status_code == status
    assert len(receiver.received) == 1


def test_post_reads_at_most_64_kb_of_the_answer(receiver, monkeypatch):
    receiver.answer_body = b"x" * (8 * 1024 * 1024)
    reads = []
    original = client.urllib3.response.HTTPResponse.read

    def spy(self, amt=None, *args, **kwargs):
        reads.append(amt)
        return original(self, amt, *args, **kwargs)

    monkeypatch.setattr(client.urllib3.response.HTTPResponse, "read", spy)
    outcome = client.post(receiver.url, body=b"{}", headers={})

    assert outcome.succeeded is True
    assert reads == [client.MAX_ANSWER_BYTES]


def test_post_gives_up_after_the_timeout(settings, monkeypatch):
    settings.LITHTRIX_WEBHOOK_ALLOW_PRIVATE = True
    monkeypatch.setattr(client, "TIMEOUT_SECONDS", 0.5)
    hole = BlackHole()
    try:
        started = time.monotonic()
        outcome = client.post(f"{hole.url}/hook", body=b"{}", headers={})
        elapsed = time.monotonic() - started
    finally:
        hole.close()
    assert outcome.succeeded is False and outcome.status_code is None
    assert 0.4 < elapsed < 3


@pytest.mark.parametrize(
    ("scheme", "prefix", "unit"),
    [
        # A TLS record header announcing 16 kB of handshake, then a byte at a time.
        ("https", b"\x16\x03\x03\x40\x00", b"\x00"),
        ("http", b"HTTP/1.1 200 ", b"K"),
        ("http", b"HTTP/1.1 200 OK\r\n", b"X-Drip: 1\r\n"),
        ("http", b"HTTP/1.1 200 OK\r\nContent-Length: 60000\r\n\r\n", b"x"),
        ("http", b"HTTP/1.1 200 OK\r\n\r\n", b"x"),  # an answer that ends at close
    ],
    ids=["tls-handshake", "status-line", "headers", "answer", "answer-without-length"],
)
def test_post_ends_at_the_deadline_however_slowly_the_receiver_drips(
    dripping, monkeypatch, scheme, prefix, unit
):
    monkeypatch.setattr(client, "TIMEOUT_SECONDS", 1.0)
    port = dripping(prefix, unit)

    started = time.monotonic()
    outcome = client.post(f"{scheme}://127.0.0.1:{port}/hook", body=b"{}", headers={})
    elapsed = time.monotonic() - started

    assert outcome == client.Outcome(succeeded=False, status_code=None, error="deadline exceeded")
    assert elapsed < client.TIMEOUT_SECONDS + 1.5


def test_post_counts_the_name_lookup_in_its_deadline(settings, monkeypatch):
    # A lookup that takes most of the time leaves the connection only the rest: the
    # attempt ends at TIMEOUT_SECONDS, not a lookup's time plus TIMEOUT_SECONDS.
    settings.LITHTRIX_WEBHOOK_ALLOW_PRIVATE = True
    monkeypatch.setattr(client, "TIMEOUT_SECONDS", 2.0)
    hole = BlackHole()

    def slow_lookup(host, port, *args, **kwargs):
        if host == "slow.example":  # not the connection's own lookup of the address
            time.sleep(1.5)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", slow_lookup)
    try:
        started = time.monotonic()
        outcome = client.post(f"http://slow.example:{hole.port}/hook", body=b"{}", headers={})
        elapsed = time.monotonic() - started
    finally:
        hole.close()

    assert outcome == client.Outcome(succeeded=False, status_code=None, error="deadline exceeded")
    assert hole.accepted == 1
    # 2 s; the lookup's 1.5 s plus a whole TIMEOUT_SECONDS would be 3.5 s.
    assert 1.9 < elapsed < 3


def test_post_gives_up_on_a_name_that_does_not_resolve_in_time(monkeypatch, hanging_resolver):
    monkeypatch.setattr(client, "TIMEOUT_SECONDS", 0.5)
    started = time.monotonic()
    outcome = client.post("https://hooks.example/hook", body=b"{}", headers={})
    elapsed = time.monotonic() - started

    assert outcome == client.Outcome(
        succeeded=False,
        status_code=None,
        error="hooks.example did not resolve within 0.5 s",
    )
    assert elapsed < 1.5


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "https://[::1]:8443/",
        "https://10.0.0.8/",
    ],
)
def test_post_refuses_private_destinations(settings, url):
    settings.LITHTRIX_WEBHOOK_ALLOW_PRIVATE = False
    outcome = client.post(url, body=b"{}", headers={})
    assert outcome.succeeded is False and outcome.status_code is None
    assert "not public" in outcome.error
