"""bench/cpu.py: CPU time per component, from /proc, each process counted once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench import cpu


def stat_line(pid: int, name: str, ppid: int, own: tuple[int, int], children: tuple[int, int]):
    # Fields 3-17 of /proc/<pid>/stat: state, ppid, pgrp, session, tty, tpgid, flags,
    # minflt, cminflt, majflt, cmajflt, utime, stime, cutime, cstime; then more.
    middle = ["S", ppid, 1, 1, 0, -1, 4194304, 10, 0, 0, 0, *own, *children]
    return f"{pid} ({name}) " + " ".join(str(x) for x in [*middle, 20, 0, 1, 0]) + "\n"


def write_proc(root: Path, rows: dict[int, tuple[str, int, tuple[int, int], tuple[int, int]]]):
    for entry in root.iterdir():
        (entry / "stat").unlink(missing_ok=True)
        entry.rmdir()
    for pid, (name, ppid, own, children) in rows.items():
        (root / str(pid)).mkdir()
        (root / str(pid) / "stat").write_text(stat_line(pid, name, ppid, own, children))
    (root / "self-not-a-pid").mkdir(exist_ok=True)


def test_parse_stat_reads_past_a_command_name_with_spaces_and_parentheses():
    stat = cpu.parse_stat(stat_line(42, "gunicorn: worker (x) [app]", 7, (120, 30), (5, 6)))

    assert stat == cpu.ProcStat(ppid=7, own=150, children=11)


def test_tree_ticks_counts_each_process_once_and_only_the_tree():
    processes = {
        10: cpu.ProcStat(ppid=1, own=5, children=100),  # master: reaped workers' 100
        11: cpu.ProcStat(ppid=10, own=40, children=0),
        12: cpu.ProcStat(ppid=10, own=60, children=7),  # a worker that reaped a child
        13: cpu.ProcStat(ppid=12, own=3, children=0),
        20: cpu.ProcStat(ppid=1, own=999, children=999),  # another server
    }

    assert cpu.tree(processes, 10) == {10, 11, 12, 13}
    assert cpu.tree_ticks(processes, [10]) == 5 + 100 + 40 + 60 + 7 + 3
    assert cpu.tree_ticks(processes, [10, 20]) == 215 + 1998
    assert cpu.tree_ticks(processes, [99]) == 0  # a root that is gone counts nothing


def test_used_seconds_is_what_the_tree_used_when_a_worker_exits_and_another_starts(tmp_path):
    tick = cpu.TICK
    write_proc(
        tmp_path,
        {
            10: ("gunicorn", 1, (10, 0), (0, 0)),
            11: ("gunicorn", 10, (3 * tick, 0), (0, 0)),
            12: ("gunicorn", 10, (tick, tick), (0, 0)),
            30: ("redis-server", 1, (50, 50), (0, 0)),
        },
    )
    components = {"gunicorn": [10], "redis": [30]}
    before = cpu.snapshot(components, tmp_path)
    # Worker 11 used 1 s more, then exited and was reaped by the master (its 4 s
    # now in the master's children); worker 12 used 2 s more; worker 14 started and
    # used 0.5 s; redis-server used 1 s.
    write_proc(
        tmp_path,
        {
            10: ("gunicorn", 1, (10, 0), (4 * tick, 0)),
            12: ("gunicorn", 10, (2 * tick, 2 * tick), (0, 0)),
            14: ("gunicorn", 10, (tick // 2, 0), (0, 0)),
            30: ("redis-server", 1, (50 + tick, 50), (0, 0)),
        },
    )
    used = cpu.used_seconds(before, cpu.snapshot(components, tmp_path), components)

    assert used["gunicorn"]["cpu_s"] == pytest.approx(1 + 2 + 0.5, abs=0.02)
    # The busiest process that lived through both snapshots: worker 12, 2 s.
    assert used["gunicorn"]["busiest_process_s"] == pytest.approx(2, abs=0.02)
    assert used["redis"] == {"cpu_s": pytest.approx(1), "busiest_process_s": pytest.approx(1)}


def test_shares_split_the_busy_time_and_the_capacity_and_name_the_rest_other():
    used = {
        "gunicorn": {"cpu_s": 6.0, "busiest_process_s": 2.0},
        "redis": {"cpu_s": 1.0, "busiest_process_s": 1.0},
        "wrk": {"cpu_s": 1.0},
    }

    table = cpu.shares(used, busy_s=10.0, wall_s=5.0, cores=2)

    assert table["gunicorn"] == {
        "cpu_s": 6.0,
        "share_of_busy_pct": 60.0,
        "capacity_pct": 60.0,
        "busiest_process_core_pct": 40.0,
    }
    assert table["redis"]["capacity_pct"] == 10.0
    assert table["redis"]["busiest_process_core_pct"] == 20.0
    assert "busiest_process_core_pct" not in table["wrk"]
    assert table["other"] == {"cpu_s": 2.0, "share_of_busy_pct": 20.0, "capacity_pct": 20.0}
    assert table["machine"]["capacity_pct"] == 100.0
    assert cpu.saturates_first(table) == "gunicorn"


def test_saturates_first_ignores_the_load_generator_and_the_rest_of_the_machine():
    table = {
        "wrk": {"capacity_pct": 70.0},
        "other": {"capacity_pct": 80.0},
        "machine": {"capacity_pct": 99.0},
        "postgresql": {"capacity_pct": 12.0},
        "gunicorn": {"capacity_pct": 9.0},
    }

    assert cpu.saturates_first(table) == "postgresql"


def test_add_up_sums_rounds_per_component():
    total = cpu.add_up(
        [{"redis": {"cpu_s": 1.0, "busiest_process_s": 0.5}}, {"redis": {"cpu_s": 2.0}}]
    )

    assert total == {"redis": {"cpu_s": 3.0, "busiest_process_s": 0.5}}


def test_snapshot_of_this_process_sees_its_own_cpu_time_grow():
    import os

    components = {"me": [os.getpid()]}
    before = cpu.snapshot(components)
    spun_from, deadline = time.process_time(), time.monotonic() + 20
    while time.process_time() - spun_from < 0.3 and time.monotonic() < deadline:
        pass  # spin: 0.3 s of CPU time, however loaded the machine
    used = cpu.used_seconds(before, cpu.snapshot(components), components)

    assert used["me"]["cpu_s"] == pytest.approx(time.process_time() - spun_from, abs=0.05)
    assert used["me"]["cpu_s"] >= 0.25
