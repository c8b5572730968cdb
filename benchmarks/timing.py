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


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """The wall time of one call of ``fn``, and what it returned."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value
