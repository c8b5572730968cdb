"""A cached re-run of a 10,000-call map on the local backend, with baselines measured in the same run.

    .venv/bin/python benchmarks/bench_cache.py [RUNS] [CALLS]

- the map run once for real (workers), which stores every result;
- the same map again, RUNS times, every call found in the cache: nothing submitted (target:
  under 2 s for 10,000 calls): the median, with the fastest and slowest run;
- against the floor of reading the same entry files and nothing else (no key, no MAC, no
  unpickling, no future), paired run by run.
The cache and its key live in a temporary directory, removed at the end.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from timing import timed

from clustrix import cluster


def score(x: int, params: dict) -> float:
    return x * params["rate"] + len(params["tags"])


def main(scratch: Path, runs: int, calls: int) -> None:
    os.environ["XDG_STATE_HOME"] = str(scratch / "state")
    cache_dir = scratch / "cache"
    fn = cluster(workdir=str(scratch / "jobs"), cache=str(cache_dir))(score)
    params = [{"rate": 0.5, "tags": ("sweep", f"p{x % 7}")} for x in range(calls)]
    expected = [score(x, p) for x, p in zip(range(calls), params, strict=True)]

    def sweep() -> int:
        futures = fn.map(range(calls), params)
        assert [f.result() for f in futures] == expected
        return sum(f.job_id.startswith("cached-") for f in futures)

    first, found = timed(sweep)
    assert found == 0
    print(f"{calls}-call map, first run (submitted to local workers, results stored): {first:.2f} s")

    entries = sorted(cache_dir.glob("*/*"))
    assert len(entries) == calls

    pairs = []
    for _ in range(runs):
        floor_time, _ = timed(lambda: [path.read_bytes() for path in entries])
        cached_time, found = timed(sweep)
        assert found == calls, f"{calls - found} calls were submitted again"
        pairs.append((floor_time, cached_time))
    cached = [c for _, c in pairs]
    floors = [f for f, _ in pairs]
    print(
        f"{calls}-call cached re-run, median of {runs}: {statistics.median(cached):.2f} s "
        f"(fastest {min(cached):.2f} s, slowest {max(cached):.2f} s; target < 2 s, nothing submitted)"
    )
    print(
        f"floor, reading the {calls} entry files alone, median of {runs}: {statistics.median(floors):.3f} s "
        f"(fastest {min(floors):.3f} s, slowest {max(floors):.3f} s); ratio cached/floor, median of pairs "
        f"{statistics.median(c / f for f, c in pairs):.1f}x"
    )
    print(f"ratio cached re-run / first run: {statistics.median(cached) / first:.3f}x")


if __name__ == "__main__":
    scratch = Path(tempfile.mkdtemp(prefix="clustrix-bench-cache-"))
    try:
        main(scratch, int(sys.argv[1]) if len(sys.argv) > 1 else 3, int(sys.argv[2]) if len(sys.argv) > 2 else 10_000)
    finally:
        shutil.rmtree(scratch)
