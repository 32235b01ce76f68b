"""The job the worker drill kills a worker in: event_dispatch with a pause around it.

Importable by the drill's workers (they run from the project directory). On its
first run only it says where it is (``<marker_dir>/paused``) and pauses there,
before or after the effect, for the drill to SIGKILL the worker; later runs (the
job handed out again) go straight through.
"""

from __future__ import annotations

import time
from pathlib import Path

from events.tasks import event_dispatch

PAUSE_SECONDS = 3.0


def dispatch_with_pause(event_id: str, marker_dir: str, kill_point: str) -> None:
    marker = Path(marker_dir)
    first_run = not (marker / "paused").exists()
    with (marker / "runs").open("a") as runs:
        runs.write("run\n")
    if first_run and kill_point == "before_effect":
        _pause(marker)
    event_dispatch(event_id)
    if first_run and kill_point == "after_effect":
        _pause(marker)


def _pause(marker: Path) -> None:
    (marker / "paused").write_text("")
    time.sleep(PAUSE_SECONDS)
    # Not killed: the drill was too slow; it checks for this file.
    (marker / "not_killed").write_text("")
