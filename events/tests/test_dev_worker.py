"""make run's worker: qcluster beside the dev server, stopped when the server stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

# Stands for runserver: finds its sibling qcluster (same parent), notes its pid, ends.
PROBE = """
import os, sys, time
parent = os.getppid()
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"qcluster" in cmdline:
            open(sys.argv[1], "w").write(entry)
            sys.exit(0)
    time.sleep(0.2)
sys.exit(1)
"""


def test_worker_runs_beside_the_command_and_stops_when_it_ends(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    pid_file = tmp_path / "qcluster.pid"
    env = {
        **os.environ,
        "DJANGO_DEBUG": "on",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }

    result = subprocess.run(
        [sys.executable, "-m", "events.dev.worker", sys.executable, str(probe), str(pid_file)],
        cwd=settings.BASE_DIR,
        env=env,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0
    assert not Path(f"/proc/{pid_file.read_text()}").exists()


def test_worker_can_be_left_out(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE.replace("deadline = time.monotonic() + 30", "deadline = 0"))
    env = {**os.environ, "LITHTRIX_DEV_WORKER": "off"}

    result = subprocess.run(
        [sys.executable, "-m", "events.dev.worker", sys.executable, str(probe), "unused"],
        cwd=settings.BASE_DIR,
        env=env,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1  # the probe found no qcluster
