"""A throwaway Redis Cluster on loopback: 3 masters and 3 replicas, started by the
tests, drills and benchmark that need one (never the machine's shared Redis).

A node also listens on its port + 10000 (the cluster bus), so the ports are picked
below 55535 with that second port free too (RECIPES: ports from the ephemeral range
fail).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from testing.assertions import wait_for
from testing.servers import redis_answers

BUS_OFFSET = 10000
NODES = 6
# Failover drills want a dead master replaced in about a second, not 15 s.
DEFAULT_NODE_TIMEOUT_MS = 1000


class RedisClusterMissing(RuntimeError):
    pass


def _binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else "")
    if not found:
        raise RedisClusterMissing(f"{name} is not installed (apt-get install redis-server)")
    return found


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(count: int = NODES) -> list[int]:
    """``count`` consecutive ports whose bus ports (+10000) are free as well: from
    LITHTRIX_CLUSTER_PORTS (``low-high``) when set, else from 10000-22700, whose bus
    ports stay below the kernel's ephemeral range (32768 up)."""
    low, _, high = os.environ.get("LITHTRIX_CLUSTER_PORTS", "10000-22700").partition("-")
    first, last = int(low), int(high or low)
    starts = list(range(first, last - count + 2))
    random.shuffle(starts)
    for start in starts:
        ports = list(range(start, start + count))
        if all(_port_free(p) and _port_free(p + BUS_OFFSET) for p in ports):
            return ports
    raise RuntimeError(f"no {count} free cluster ports in {first}-{last}")


@dataclass
class Node:
    port: int
    directory: Path
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cli(self, *args: str, timeout: float = 10) -> str:
        return subprocess.run(
            [_binary("redis-cli"), "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        ).stdout

    def wait_replicated(self, timeout: float = 10) -> None:
        """Until a replica of this master has acknowledged every write it has so far
        (its offset in INFO replication reaches the master's). WAIT would not do: it
        waits for the writes of its own connection only."""
        info = self.cli("INFO", "replication")
        offset = re.search(r"master_repl_offset:(\d+)", info)
        if offset is None:
            raise RuntimeError(f"no replication offset from {self.address}: {info!r}")
        target = int(offset[1])

        def acknowledged() -> bool:
            replicas = re.findall(r"slave\d+:.*?offset=(\d+)", self.cli("INFO", "replication"))
            return any(int(acked) >= target for acked in replicas)

        if not wait_for(acknowledged, timeout):
            raise TimeoutError(f"no replica of {self.address} reached offset {target}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class RedisCluster:
    """Six redis-server processes, clustered. ``url`` names one node, as
    LITHTRIX_REDIS_CLUSTER=on expects of REDIS_URL."""

    directory: Path
    node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://{self.nodes[0].address}/0"

    def start(self, timeout: float = 30) -> None:
        ports = free_cluster_ports()
        self.nodes = [Node(port, self.directory / str(port)) for port in ports]
        for node in self.nodes:
            self._spawn(node)
        for node in self.nodes:
            self._wait_ping(node, timeout)
        subprocess.run(
            [
                _binary("redis-cli"),
                "--cluster",
                "create",
                *(node.address for node in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        self.wait_ok(timeout)
        # Every replica attached to its master and holding its copy (a failover
        # needs one to promote).
        deadline = time.monotonic() + timeout
        while len(self.replicas()) < NODES // 2 or not all(
            "master_link_status:up" in node.cli("info", "replication") for node in self.replicas()
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas did not attach: {self.nodes_info()}")
            time.sleep(0.1)

    def _spawn(self, node: Node) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        node.process = subprocess.Popen(
            [
                _binary("redis-server"),
                *("--port", str(node.port), "--bind", "127.0.0.1"),
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-node-timeout", str(self.node_timeout_ms)),
                # A replica may always take over, however long it was cut off, and a
                # replica's first copy starts at once (no RDB file, no 5 s delay).
                *("--cluster-replica-validity-factor", "0"),
                *("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"),
                *("--save", "", "--appendonly", "no"),
                *("--logfile", str(node.directory / "redis.log")),
            ],
            cwd=node.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @staticmethod
    def _wait_ping(node: Node, timeout: float) -> None:
        if not redis_answers(node.port, timeout):
            raise RuntimeError(f"redis-server on {node.port} did not start")

    def nodes_info(self) -> list[dict[str, str]]:
        """CLUSTER NODES as seen by a live node: address, flags, master id, link."""
        for node in self.nodes:
            if node.alive():
                text = node.cli("cluster", "nodes")
                if text.strip():
                    rows = []
                    for line in text.splitlines():
                        parts = line.split()
                        rows.append(
                            {
                                "id": parts[0],
                                "address": parts[1].split("@")[0],
                                "flags": parts[2],
                                "master": parts[3],
                                "link": parts[7],
                            }
                        )
                    return rows
        return []

    def _with_flag(self, flag: str) -> list[Node]:
        by_address = {node.address: node for node in self.nodes}
        return [
            by_address[row["address"]]
            for row in self.nodes_info()
            if flag in row["flags"].split(",")
            and "fail" not in row["flags"]
            and row["link"] == "connected"
            and row["address"] in by_address
        ]

    def masters(self) -> list[Node]:
        return self._with_flag("master")

    def replicas(self) -> list[Node]:
        return self._with_flag("slave")

    def master_of(self, key: str) -> Node:
        """The master serving ``key``'s hash slot now."""
        live = next(node for node in self.nodes if node.alive())
        slot = int(live.cli("cluster", "keyslot", key).strip())
        for low, high, node in self.slot_ranges():
            if low <= slot <= high:
                return node
        raise RuntimeError(f"no master serves slot {slot}")

    def slot_ranges(self) -> list[tuple[int, int, Node]]:
        """(first slot, last slot, master) for every slot range a live master serves,
        from CLUSTER NODES (its fields after the eighth are the master's ranges)."""
        by_port = {node.port: node for node in self.nodes}
        live = next(node for node in self.nodes if node.alive())
        ranges = []
        for line in live.cli("cluster", "nodes").splitlines():
            parts = line.split()
            flags = parts[2].split(",")
            if "master" not in flags or "fail" in flags:
                continue
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            for span in parts[8:]:
                if span.startswith("["):
                    continue  # a slot being migrated
                low, _, high = span.partition("-")
                ranges.append((int(low), int(high or low), by_port[port]))
        return ranges

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node says cluster_state:ok and every one of the 16384
        slots is served by a live master (after a kill: until a replica took over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [node for node in self.nodes if node.alive()]
            if all("cluster_state:ok" in node.cli("cluster", "info") for node in live):
                served = sum(
                    high - low + 1 for low, high, node in self.slot_ranges() if node.alive()
                )
                if served == 16384:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the cluster did not recover: {self.nodes_info()}")

    def kill(self, node: Node) -> None:
        """SIGKILL one node (a master dies without a word)."""
        assert node.process is not None
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=10)

    def restart(self, node: Node) -> None:
        """Start a killed node again on its own nodes.conf: it rejoins the cluster
        (as a replica of whoever took over its slots)."""
        self._spawn(node)
        self._wait_ping(node, 10)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(timeout=10)


@contextlib.contextmanager
def running_cluster(directory: Path, **kwargs) -> Iterator[RedisCluster]:
    cluster = RedisCluster(directory, **kwargs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
