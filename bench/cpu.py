"""CPU time per component of the stack (nginx, gunicorn, PostgreSQL, Redis, wrk),
read from /proc, to tell which one saturates first.

A component is a process tree under a root pid (nginx's master, gunicorn's master,
a PostgreSQL postmaster, redis-server). Its CPU time is the sum, over the live
processes of the tree, of their own time (utime + stime) and of their reaped
children's (cutime + cstime): a worker or backend that exited is counted once, in
the process that reaped it, and the difference between two snapshots is what the
tree used between them, whatever started or exited meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    ppid: int
    own: int  # utime + stime, in clock ticks
    children: int  # cutime + cstime: its exited and reaped children's, in clock ticks


def parse_stat(text: str) -> ProcStat:
    """The fields of /proc/<pid>/stat that matter here. The command name (field 2,
    in parentheses) may hold spaces and parentheses: split after its last ')'."""
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime fields 14-17.
    return ProcStat(
        ppid=int(fields[1]),
        own=int(fields[11]) + int(fields[12]),
        children=int(fields[13]) + int(fields[14]),
    )


def read_processes(proc: Path = PROC) -> dict[int, ProcStat]:
    """Every process's ProcStat (a process that exits while being read is left out)."""
    found = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = parse_stat((entry / "stat").read_text())
            except (OSError, IndexError, ValueError):
                continue
    return found


def tree(processes: Mapping[int, ProcStat], root: int) -> set[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for pid, stat in processes.items():
        children.setdefault(stat.ppid, []).append(pid)
    members: set[int] = set()
    stack = [root] if root in processes else []
    while stack:
        pid = stack.pop()
        if pid not in members:
            members.add(pid)
            stack.extend(children.get(pid, ()))
    return members


def tree_ticks(processes: Mapping[int, ProcStat], roots: Iterable[int]) -> int:
    """The CPU ticks used so far by the trees under ``roots`` (each process once)."""
    members: set[int] = set()
    for root in roots:
        members |= tree(processes, root)
    return sum(processes[pid].own + processes[pid].children for pid in members)


def busiest_process_ticks(
    before: Mapping[int, ProcStat], after: Mapping[int, ProcStat], members: Iterable[int]
) -> int:
    """The most ticks any one process of ``members`` used between the snapshots (its
    own time only): a single-threaded server (redis-server) saturates at one core."""
    return max(
        (after[pid].own - before[pid].own for pid in members if pid in before and pid in after),
        default=0,
    )


Components = Mapping[str, list[int]]


@dataclass(frozen=True)
class Snapshot:
    processes: dict[int, ProcStat]
    ticks: dict[str, int]


def snapshot(components: Components, proc: Path = PROC) -> Snapshot:
    processes = read_processes(proc)
    return Snapshot(
        processes, {name: tree_ticks(processes, roots) for name, roots in components.items()}
    )


def used_seconds(
    before: Snapshot, after: Snapshot, components: Components
) -> dict[str, dict[str, float]]:
    """Per component: CPU seconds between the snapshots, and the busiest single
    process's seconds."""
    used = {}
    for name, roots in components.items():
        members: set[int] = set()
        for root in roots:
            members |= tree(after.processes, root)
        used[name] = {
            "cpu_s": max(after.ticks[name] - before.ticks[name], 0) / TICK,
            "busiest_process_s": busiest_process_ticks(before.processes, after.processes, members)
            / TICK,
        }
    return used


def shares(
    used: Mapping[str, Mapping[str, float]], *, busy_s: float, wall_s: float, cores: int
) -> dict[str, dict[str, float]]:
    """Each component's share of the machine's busy CPU time, its % of the machine's
    whole capacity (wall time x cores) and its busiest process's % of one core; the
    machine's busy time none of them used is "other" (the kernel's network work,
    the bench itself, other work on the machine)."""
    capacity = wall_s * cores
    result: dict[str, dict[str, float]] = {}
    for name, one in used.items():
        result[name] = {
            "cpu_s": round(one["cpu_s"], 3),
            "share_of_busy_pct": round(100 * one["cpu_s"] / busy_s, 1) if busy_s else 0.0,
            "capacity_pct": round(100 * one["cpu_s"] / capacity, 1) if capacity else 0.0,
        }
        if "busiest_process_s" in one and wall_s:
            result[name]["busiest_process_core_pct"] = round(
                100 * one["busiest_process_s"] / wall_s, 1
            )
    other = max(busy_s - sum(one["cpu_s"] for one in used.values()), 0.0)
    result["other"] = {
        "cpu_s": round(other, 3),
        "share_of_busy_pct": round(100 * other / busy_s, 1) if busy_s else 0.0,
        "capacity_pct": round(100 * other / capacity, 1) if capacity else 0.0,
    }
    result["machine"] = {
        "cpu_s": round(busy_s, 3),
        "share_of_busy_pct": 100.0 if busy_s else 0.0,
        "capacity_pct": round(100 * busy_s / capacity, 1) if capacity else 0.0,
    }
    return result


def add_up(
    measurements: Iterable[Mapping[str, Mapping[str, float]]],
) -> dict[str, dict[str, float]]:
    """Several measurements' used seconds added per component (rounds of one endpoint)."""
    total: dict[str, dict[str, float]] = {}
    for one in measurements:
        for name, values in one.items():
            slot = total.setdefault(name, {})
            for key, value in values.items():
                slot[key] = slot.get(key, 0.0) + value
    return total


def saturates_first(table: Mapping[str, Mapping[str, float]]) -> str:
    """The component (not "other", not the machine) with the largest capacity share."""
    candidates = {k: v for k, v in table.items() if k not in ("other", "machine", "wrk")}
    return max(candidates, key=lambda name: candidates[name]["capacity_pct"]) if candidates else ""


def postmaster_pid(url: str) -> int:
    """The postmaster of the PostgreSQL server at ``url``: the parent of our backend."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        # Read while connected: the backend exits with the connection.
        return parse_stat((PROC / str(row[0]) / "stat").read_text()).ppid


def redis_pid(url: str) -> int:
    """The redis-server process of the Redis at ``url`` (INFO server: process_id)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()
