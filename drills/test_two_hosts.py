"""Two app hosts behind one nginx upstream (deploy/nginx/lithtrix.conf, its second
``server`` line): one host is SIGKILLed, master and workers, while agents call.

nginx passes an idempotent request that the dead host lost to the other host, and
never a POST that reached the dead host, nor any /v1/authorize (metered: its host
may have counted it). So the only calls that fail are those nginx had passed to the
dead host before it saw that host fail (max_fails=1 then takes the host out): the
calls in flight on it, and those passed to it in the moment its processes took to
die. nginx's access log (each call's X-Request-Id, its upstream addresses and
times) shows which calls those were. Metering: each agent's calls are made one
after another, and every 200 from /v1/authorize carries the agent's count after
that call (X-Calls-Remaining), so the next answer shows whether a lost call before
it was counted: calls_total is the 200s plus exactly those.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from drills.conftest import ROWS, Postgres, drill_environment
from testing.assertions import wait_for
from testing.load import Calls, timed_call
from testing.nginx import start_front, stop_nginx
from testing.servers import Server, start_gunicorn

WORKERS_PER_HOST = 2
# Client threads per call: GET /v1/authorize (metered), GET /v1/me, POST
# /v1/authorize (metered, and a POST nginx must not resend). Each metered thread is
# an agent of its own, so that agent's calls are made one after another.
THREADS = {"GET authorize": 3, "GET me": 2, "POST authorize": 1}
METERED = ("GET authorize", "POST authorize")
WARMUP_CALLS = 4 * WORKERS_PER_HOST
BASELINE_SECONDS = 2.0
AFTER_KILL_SECONDS = 4.0
# Host A's workers are all up, and after the kill all gone, within this.
GONE_BOUND = 10.0
# A call that failed got nginx's answer within this: the dead host's connections
# were reset when its processes exited, nothing waited for a timeout (the clients'
# is 10 s, nginx's proxy_read_timeout 35 s).
FAILED_ANSWER_BOUND = 3.0
# The drill's LITHTRIX_FREE_CALL_LIMIT: X-Calls-Remaining is this minus the
# agent's calls_total after the call.
CALL_LIMIT = 1_000_000
# nginx's access log: request id, end (s), duration (s), status, the upstream
# addresses tried, their statuses.
LOG_FORMAT = (
    "log_format drill '$lithtrix_request_id|$msec|$request_time|$status|"
    "$upstream_addr|$upstream_status';\n"
)


@dataclass
class Hosts:
    a: Server
    b: Server
    front_url: str
    front_dir: Path
    postgres: Postgres

    def register(self, name: str) -> tuple[str, str]:
        response = requests.post(
            f"{self.b.url}/v1/register",
            json={"agent_name": f"{name}-{uuid.uuid4().hex[:8]}", "owner_identifier": "d@x.io"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return response.json()["agent_id"], response.json()["api_key"]

    def calls_total(self, agent_id: str) -> int:
        rows = self.postgres.query("SELECT calls_total FROM accounts_agent WHERE id = %s", agent_id)
        return rows[0][0]

    def access_log(self, request_ids: AbstractSet[str] = frozenset()) -> dict[str, Passed]:
        """nginx's access log line of every call, by request id. nginx writes a line
        once it has finished the request, which may be just after the client has the
        answer: waits (a few seconds at most) for the lines of ``request_ids``."""
        wait_for(lambda: request_ids <= self._read_access_log().keys(), timeout=5)
        return self._read_access_log()

    def _read_access_log(self) -> dict[str, Passed]:
        passed = {}
        for line in (self.front_dir / "access.log").read_text().splitlines():
            rid, end, duration, status, addrs, statuses = line.split("|")
            passed[rid] = Passed(
                start=float(end) - float(duration),
                end=float(end),
                status=int(status),
                upstreams=addrs.split(", ") if addrs != "-" else [],
                upstream_statuses=statuses.split(", ") if statuses != "-" else [],
            )
        return passed


@dataclass
class Passed:
    """What nginx did with a call (its clock: wall time, millisecond resolution)."""

    start: float
    end: float
    status: int
    upstreams: list[str]
    upstream_statuses: list[str]


def _alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (a zombie has died: it waits to be reaped)."""
    alive = []
    for pid in pids:
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                alive.append(pid)
    return alive


@pytest.fixture
def hosts(postgres, redis, black_hole, tmp_path) -> Iterator[Hosts]:
    env = drill_environment(
        database_url=postgres.url,
        redis_url=redis.url,
        stripe_port=black_hole.port,
        LITHTRIX_REGISTER_RATE="100000/m",
        LITHTRIX_TRUSTED_PROXIES="127.0.0.1",
        LITHTRIX_FREE_CALL_LIMIT=str(CALL_LIMIT),
    )
    a = start_gunicorn(workers=WORKERS_PER_HOST, env=env, log_path=tmp_path / "a.log")
    try:
        b = start_gunicorn(workers=WORKERS_PER_HOST, env=env, log_path=tmp_path / "b.log")
    except Exception:
        a.stop()
        raise
    front_dir = tmp_path / "nginx"
    front_dir.mkdir()
    second = b.url.removeprefix("http://")
    nginx, front_url = start_front(
        front_dir,
        a.url,
        # Two worker processes, as `worker_processes auto` gives on 2 cores: the
        # upstream's zone makes the first failure either sees take host A out for both.
        workers=2,
        replace={
            "# server ${LITHTRIX_UPSTREAM_2}": f"server {second}",
            "limit_req_status 429;": LOG_FORMAT + "limit_req_status 429;",
            "    server_tokens off;": (
                f"    server_tokens off;\n    access_log {front_dir}/access.log drill;"
            ),
        },
    )
    try:
        yield Hosts(a, b, front_url, front_dir, postgres)
    finally:
        stop_nginx(nginx)
        a.stop()
        b.stop()


@dataclass
class Client:
    """One client thread: its call, and the metered agent it calls as (if any)."""

    name: str
    method: str
    url: str
    key: str
    agent_id: str | None = None


@dataclass
class Call:
    client: int
    name: str
    request_id: str
    started: float
    ended: float
    status: int | str
    # The agent's calls_total after this call, from a metered 200's X-Calls-Remaining.
    counted: int | None
    warmup: bool


@dataclass
class Loop:
    """Client threads calling through nginx; counts what is in flight at any moment."""

    clients: list[Client]
    calls: dict[str, Calls] = field(default_factory=dict)
    timeline: list[Call] = field(default_factory=list)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, n: int, session: requests.Session, *, warmup: bool = False) -> Call:
        client = self.clients[n]
        request_id = f"drill-{n}-{uuid.uuid4().hex[:12]}"
        # This call alone, then added to its kind's tally: its own status, "truncated"
        # (an answer cut short) told apart from no answer at all.
        one = Calls()
        with self.lock:
            self.in_flight += 1
        started = time.monotonic()
        response = timed_call(
            one,
            session,
            client.method,
            client.url,
            headers={"Authorization": f"Bearer {client.key}", "X-Request-Id": request_id},
            timeout=10,
        )
        (status,) = one.statuses
        if not warmup:
            calls = self.calls.setdefault(client.name, Calls())
            calls.record(status, one.latencies[0], one.bodies[0][1] if one.bodies else b"")
            with calls.lock:
                calls.errors += one.errors[: 20 - len(calls.errors)]
        counted = None
        if response is not None and client.agent_id and status == 200:
            counted = CALL_LIMIT - int(response.headers["X-Calls-Remaining"])
        with self.lock:
            self.in_flight -= 1
            call = Call(
                n, client.name, request_id, started, time.monotonic(), status, counted, warmup
            )
            self.timeline.append(call)
        return call

    @contextlib.contextmanager
    def running(self) -> Iterator[Loop]:
        stop = threading.Event()

        def loop(n: int) -> None:
            session = requests.Session()
            while not stop.is_set():
                if self.call(n, session).status in ("truncated", "timeout", "error"):
                    session = requests.Session()
                stop.wait(0.005)

        for client in self.clients:
            self.calls.setdefault(client.name, Calls())
        threads = [
            threading.Thread(target=loop, args=(n,), daemon=True) for n in range(len(self.clients))
        ]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)

    def between(self, name: str, start: float, end: float) -> Calls:
        """The calls of ``name`` that started in [start, end), after the warm-up."""
        calls = Calls()
        for call in self.timeline:
            if call.name == name and not call.warmup and start <= call.started < end:
                calls.record(call.status, call.ended - call.started)
        return calls


@dataclass
class Metered:
    """One agent's metering, from its answers in the order it made them."""

    ok: int = 0
    lost: int = 0
    # Lost calls whose count the agent's next 200 showed.
    lost_counted: int = 0
    # calls_total after the agent's last 200.
    last: int = 0


def metered(calls: list[Call]) -> Metered:
    """Walk one agent's calls (one thread: each ended before the next started). A 200
    counts one more than the 200 before it, plus the lost calls between them that
    its host counted before the answer was lost: never fewer, never more."""
    seen = Metered()
    lost_since = 0
    for call in calls:
        if call.status != 200:
            seen.lost += 1
            lost_since += 1
            continue
        assert call.counted is not None, call
        step = call.counted - seen.last
        assert 1 <= step <= 1 + lost_since, (call, seen, lost_since)
        seen.ok += 1
        seen.lost_counted += step - 1
        seen.last = call.counted
        lost_since = 0
    return seen


def test_one_of_two_hosts_killed(hosts):
    front = hosts.front_url
    clients = []
    for name, threads in THREADS.items():
        method, path = name.split()
        url = f"{front}/v1/{path}"
        if name in METERED:  # an agent per thread: its calls one after another
            for _ in range(threads):
                agent_id, key = hosts.register(f"drill-hosts-{method.lower()}-{path}")
                clients.append(Client(name, method, url, key, agent_id))
        else:
            _agent_id, key = hosts.register(f"drill-hosts-{path}")
            clients += [Client(name, method, url, key) for _ in range(threads)]
    loop = Loop(clients)
    # Warm-up (connections, both hosts' workers): metered calls too, counted below.
    session = requests.Session()
    for n in range(len(clients)):
        for _ in range(WARMUP_CALLS):
            call = loop.call(n, session, warmup=True)
            assert call.status == 200, call

    a_addr = hosts.a.url.removeprefix("http://")
    b_addr = hosts.b.url.removeprefix("http://")
    master = hosts.a.process.pid
    deadline = time.monotonic() + GONE_BOUND
    while len(victims := _alive([master, *hosts.a.children()])) < 1 + WORKERS_PER_HOST:
        assert time.monotonic() < deadline, f"host A runs {victims}"
        time.sleep(0.05)
    with loop.running():
        time.sleep(BASELINE_SECONDS)
        with loop.lock:  # no call starts or ends between the count and the kill
            in_flight_at_kill = loop.in_flight
            for pid in victims:  # the master first: it must not replace its workers
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            killed_at_wall = time.time()
        while _alive(victims) and time.monotonic() - killed_at < GONE_BOUND:
            time.sleep(0.05)
        gone = not _alive(victims)
        time.sleep(AFTER_KILL_SECONDS)
        ended = time.monotonic()
    passed = hosts.access_log({call.request_id for call in loop.timeline if not call.warmup})

    after = [call for call in loop.timeline if not call.warmup]
    failures = [call for call in after if call.status != 200]
    late = [call for call in failures if call.started > killed_at]
    last_failure = max((call.ended for call in failures), default=killed_at)
    recovery = max(0.0, last_failure - killed_at)
    me_before = loop.between("GET me", 0, killed_at)
    me_after = loop.between("GET me", killed_at, ended)
    # nginx's view: when it first saw host A fail, and which calls it passed to A.
    a_failed = [
        p.end
        for p in passed.values()
        if a_addr in p.upstreams and p.upstream_statuses[p.upstreams.index(a_addr)] == "502"
    ]
    nginx_saw = min(a_failed, default=float("inf"))
    to_a = {rid: p for rid, p in passed.items() if a_addr in p.upstreams}
    # nginx's $msec and $request_time are in milliseconds, and each of its worker
    # processes stamps them from its own clock, cached once per pass of its event loop.
    resolution = 0.05
    to_a_after_kill = [p for p in to_a.values() if p.start >= killed_at_wall]
    to_a_near_kill = [p for p in to_a.values() if p.start >= killed_at_wall - resolution]

    agents: dict[str, Metered] = {}
    totals: dict[str, int] = {}
    for n, client in enumerate(clients):
        if client.agent_id:
            agents[client.agent_id] = metered([c for c in loop.timeline if c.client == n])
            totals[client.agent_id] = hosts.calls_total(client.agent_id)

    def ms(calls: Calls) -> str:
        return f"{calls.p(50) * 1000:.0f}/{calls.p(99) * 1000:.0f}"

    saw = "; ".join(
        f"{name} " + " ".join(f"{k}x{v}" for k, v in sorted(calls.statuses.items(), key=str))
        for name, calls in loop.calls.items()
    )
    by_kind = {
        name: [c.agent_id for c in clients if c.name == name and c.agent_id] for name in METERED
    }
    ROWS.append(
        {
            "drill": "app host SIGKILL",
            "broken": (
                f"1 of 2 gunicorn hosts ({WORKERS_PER_HOST} workers each) killed, master and "
                "workers, through one nginx upstream"
            ),
            "clients saw": (
                f"{saw}; {len(failures)} failed: {in_flight_at_kill} in flight at kill, "
                f"{len(late)} of them sent after it; nginx saw A fail "
                f"{(nginx_saw - killed_at_wall) * 1000:.0f} ms after the kill and passed it "
                f"{len(to_a_after_kill)} calls sent after the kill"
            ),
            "unaffected p50/p99": f"GET me {ms(me_after)} ms (before {ms(me_before)})",
            "recovery": f"{recovery:.2f} s (the last failure answered)",
            "calls_total": "; ".join(
                f"{name} {sum(totals[a] for a in ids)} = {sum(agents[a].ok for a in ids)} 200s"
                f" + {sum(agents[a].lost_counted for a in ids)} of"
                f" {sum(agents[a].lost for a in ids)} lost"
                for name, ids in by_kind.items()
            ),
        }
    )
    assert gone, "the killed host's processes did not all go"
    for name, calls in loop.calls.items():
        assert set(calls.statuses) <= {200, 502, "truncated"}, (name, calls.summary(), calls.errors)
        for status, body in calls.bodies:
            if status == 502:
                assert b"BAD_GATEWAY" in body, body
    # Each failure was answered at once (a reset connection), never left to time out.
    slow = [call for call in failures if call.ended - call.started > FAILED_ANSWER_BOUND]
    assert not slow, slow
    # Every failure is a call nginx passed to host A, and to no other host: nginx
    # never resent a POST or any /v1/authorize (nor took back a truncated answer).
    for call in failures:
        assert call.name in METERED or call.status == "truncated", call
        assert passed[call.request_id].upstreams == [a_addr], (call, passed[call.request_id])
    # Every GET /v1/me that host A lost nginx resent to host B, which answered it.
    for call in after:
        p = passed[call.request_id]
        if call.name == "GET me" and p.upstreams[0] == a_addr and p.upstream_statuses[0] == "502":
            assert p.upstreams == [a_addr, b_addr] and call.status == 200, (call, p)
    # nginx took host A out at its first failure (max_fails=1; fail_timeout is longer
    # than the drill): no call reached host A after nginx saw it fail. So a call that
    # failed was in flight on host A at the kill, or nginx passed it to host A in the
    # moment host A's processes took to die, before any of its connections was reset.
    assert a_failed, "nginx never saw host A fail"
    assert all(p.start <= nginx_saw + resolution for p in to_a.values()), (nginx_saw, to_a)
    assert len(failures) <= in_flight_at_kill + len(to_a_near_kill), (failures, in_flight_at_kill)
    # The surviving host served every kind of call after the kill.
    for name in THREADS:
        served = loop.between(name, killed_at, ended)
        assert served.ok > 0, (name, served.summary())
    for n in range(len(clients)):
        last = [call for call in loop.timeline if call.client == n][-1]
        assert last.status == 200, last
    # Metering: each agent's calls_total is its 200s plus exactly the lost calls its
    # next answer shows were counted (metered() checks each step).
    for agent_id, seen in agents.items():
        assert totals[agent_id] == seen.last == seen.ok + seen.lost_counted, (agent_id, seen)
    assert requests.get(f"{front}/readyz", timeout=5).status_code == 200
