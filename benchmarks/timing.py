"""Timing helpers shared by the benchmark scripts (run as `python benchmarks/bench_X.py`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], n: int) -> float:
    """The median wall time of ``n`` calls of ``fn``."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_medians(
    baseline: Callable[[], object], measured: Callable[[], object], n: int
) -> tuple[float, float, float]:
    """``baseline`` and ``measured`` run in turn ``n`` times each: their median wall times, and the
    median of the ``n`` ratios measured/baseline of runs side by side (a machine whose speed drifts
    during the run moves both halves of a pair alike)."""
    pairs = [(timed(baseline)[0], timed(measured)[0]) for _ in range(n)]
    return (
        statistics.median(b for b, _ in pairs),
        statistics.median(m for _, m in pairs),
        statistics.median(m / b for b, m in pairs),
    )


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """The wall time of one call of ``fn``, and what it returned."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value
