"""A streaming replica's lag, sampled while the bench loads its primary.

Every ``interval`` seconds: the primary's current WAL position, then on the replica
the bytes it has still to replay (``pg_wal_lsn_diff``) and the age of the last
transaction it replayed (``now() - pg_last_xact_replay_timestamp()``). That age
only means lag while WAL flows: on an idle primary it grows with the idle time.
So a sample counts only when the primary wrote WAL since the one before, and its
time lag is 0 when the replica had already replayed everything the primary had
written when the sample began.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import statistics
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class LagSample:
    at: float  # seconds since sampling started
    endpoint: str  # what the bench was loading
    primary_lsn_bytes: int  # the primary's WAL position, as a byte offset
    behind_bytes: int  # WAL the replica had not replayed yet
    replay_age_ms: float  # now() - pg_last_xact_replay_timestamp() on the replica


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.99 for p99) of ``values``."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def flowing(samples: Sequence[LagSample]) -> list[tuple[LagSample, float]]:
    """The samples taken while WAL flowed (the primary's position moved since the
    sample before), each with its time lag in ms (0 when fully replayed)."""
    kept = []
    for previous, sample in itertools.pairwise(samples):
        if sample.primary_lsn_bytes > previous.primary_lsn_bytes:
            lag_ms = sample.replay_age_ms if sample.behind_bytes > 0 else 0.0
            kept.append((sample, max(lag_ms, 0.0)))
    return kept


def summarize(samples: Sequence[LagSample]) -> dict[str, Any]:
    """p50, p99 and max of the lag in ms and bytes over the samples taken while WAL
    flowed, overall and per endpoint."""

    def stats(rows: list[tuple[LagSample, float]]) -> dict[str, Any]:
        if not rows:
            return {"samples": 0}
        ms = [lag for _, lag in rows]
        behind = [float(sample.behind_bytes) for sample, _ in rows]
        return {
            "samples": len(rows),
            "p50_ms": round(statistics.median(ms), 1),
            "p99_ms": round(percentile(ms, 0.99), 1),
            "max_ms": round(max(ms), 1),
            "p50_bytes": int(statistics.median(behind)),
            "p99_bytes": int(percentile(behind, 0.99)),
            "max_bytes": int(max(behind)),
        }

    rows = flowing(samples)
    by_endpoint: dict[str, list[tuple[LagSample, float]]] = {}
    for row in rows:
        by_endpoint.setdefault(row[0].endpoint, []).append(row)
    return {
        "all": stats(rows),
        "by_endpoint": {name: stats(one) for name, one in by_endpoint.items()},
        "samples_taken": len(samples),
    }


def format_summary(summary: dict[str, Any]) -> list[str]:
    lines = []
    for name, one in [("while WAL flowed", summary["all"]), *summary["by_endpoint"].items()]:
        if not one["samples"]:
            lines.append(f"{name:<30} no sample while WAL flowed")
            continue
        lines.append(
            f"{name:<30} {one['samples']:>4} samples: p50 {one['p50_ms']:.1f} ms / "
            f"{one['p50_bytes']:,} B, p99 {one['p99_ms']:.1f} ms / {one['p99_bytes']:,} B, "
            f"max {one['max_ms']:.1f} ms / {one['max_bytes']:,} B"
        )
    return lines


class LagSampler:
    """Samples in a thread of its own; ``endpoint`` names what is being loaded."""

    def __init__(self, primary_url: str, replica_url: str, interval: float = 0.5) -> None:
        self.primary_url = primary_url
        self.replica_url = replica_url
        self.interval = interval
        self.endpoint = ""
        self.samples: list[LagSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import time

        import psycopg

        started = time.monotonic()
        with (
            psycopg.connect(self.primary_url, autocommit=True) as primary,
            psycopg.connect(self.replica_url, autocommit=True) as replica,
        ):
            while not self._stop.wait(self.interval):
                endpoint = self.endpoint
                row = primary.execute(
                    "SELECT pg_current_wal_lsn()::text,"
                    " pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
                ).fetchone()
                assert row is not None
                lsn, position = row
                lag = replica.execute(
                    "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())::bigint,"
                    " extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000",
                    [lsn],
                ).fetchone()
                assert lag is not None
                self.samples.append(
                    LagSample(
                        at=round(time.monotonic() - started, 2),
                        endpoint=endpoint,
                        primary_lsn_bytes=int(position),
                        behind_bytes=max(int(lag[0] or 0), 0),
                        replay_age_ms=float(lag[1] or 0.0),
                    )
                )

    @contextlib.contextmanager
    def running(self) -> Iterator[LagSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=10)

    def record(self) -> list[dict[str, Any]]:
        return [asdict(sample) for sample in self.samples]
