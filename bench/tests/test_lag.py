"""bench/lag.py: the replica's lag, counted only while WAL flows."""

from __future__ import annotations

from bench.lag import LagSample, flowing, format_summary, percentile, summarize


def sample(at: float, endpoint: str, position: int, behind: int, age_ms: float) -> LagSample:
    return LagSample(at, endpoint, position, behind, age_ms)


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))

    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([3, 1, 2], 1.0) == 3


def test_only_samples_while_wal_flowed_count_and_a_replayed_replica_lags_zero():
    samples = [
        sample(0.5, "bare", 1000, 0, 9000.0),  # the first: nothing to compare with
        sample(1.0, "bare", 1000, 0, 9500.0),  # idle primary: the age is idle time
        sample(1.5, "authorize", 5000, 800, 12.0),
        sample(2.0, "authorize", 9000, 0, 30.0),  # all replayed: no lag
        sample(2.5, "authorize", 9000, 0, 530.0),  # idle again
    ]

    kept = flowing(samples)

    assert [(s.at, lag) for s, lag in kept] == [(1.5, 12.0), (2.0, 0.0)]


def test_summarize_gives_ms_and_bytes_overall_and_per_endpoint():
    samples = [sample(0.0, "me", 0, 0, 0.0)]
    position = 0
    for n in range(1, 101):
        position += 1000
        samples.append(sample(n * 0.5, "authorize" if n > 50 else "me", position, n * 10, n))

    summary = summarize(samples)

    assert summary["samples_taken"] == 101
    assert summary["all"] == {
        "samples": 100,
        "p50_ms": 50.5,
        "p99_ms": 99.0,
        "max_ms": 100.0,
        "p50_bytes": 505,
        "p99_bytes": 990,
        "max_bytes": 1000,
    }
    assert summary["by_endpoint"]["me"]["samples"] == 50
    assert summary["by_endpoint"]["authorize"]["max_bytes"] == 1000
    lines = format_summary(summary)
    assert lines[0].startswith("while WAL flowed")
    assert "p99 99.0 ms / 990 B" in lines[0]


def test_summarize_without_wal_says_so():
    summary = summarize([sample(0.0, "bare", 10, 0, 5.0), sample(0.5, "bare", 10, 0, 505.0)])

    assert summary["all"] == {"samples": 0}
    assert format_summary(summary) == ["while WAL flowed               no sample while WAL flowed"]
