"""`make run`'s job worker: `manage.py qcluster` beside COMMAND, stopped with it.

    python -m events.dev.worker COMMAND...
    (make run: ... devstripe .venv/bin/python -m events.dev.worker .venv/bin/python
     manage.py runserver ...)

Starts one qcluster on COMMAND's environment (so it sees the same database and,
under make run, the same local Stripe), runs COMMAND, and stops the worker when
COMMAND ends, however it ends. LITHTRIX_DEV_WORKER=off runs COMMAND alone (jobs
then wait in the database until `make worker` runs).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from types import FrameType
from typing import NoReturn

STOP_SECONDS = 10
PR_SET_PDEATHSIG = 1


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(128 + signum)


def stop(process: subprocess.Popen, *, group: bool = False) -> None:
    """SIGTERM (qcluster finishes the job in hand), then SIGKILL after STOP_SECONDS.

    With ``group`` the SIGKILL goes to the process's whole group: qcluster forks a
    sentinel, a pusher, a monitor and its workers, which would outlive it.
    """
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _die_with_parent() -> None:
    # Linux's PR_SET_PDEATHSIG: the cluster gets SIGTERM when this wrapper dies, even
    # by SIGKILL, so no make run leaves a worker behind.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main(command: list[str]) -> int:
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    if os.environ.get("LITHTRIX_DEV_WORKER", "").lower() in {"off", "0", "no", "false"}:
        return subprocess.call(command)  # noqa: S603 - the developer's own command
    signal.signal(signal.SIGTERM, _terminate)
    # Its own process group: a Ctrl-C meant for the dev server reaches the cluster
    # only through stop(), which lets it finish the job in hand, then ends the group.
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    child = None
    try:
        child = subprocess.Popen(command)  # noqa: S603 - the developer's own command
        return child.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        # A second SIGTERM (make's whole group gets one, then devstripe sends its own)
        # must not cut the stop short and orphan the cluster.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if child is not None:
            stop(child)
        stop(worker, group=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
