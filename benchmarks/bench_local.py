"""Local backend overhead, printed as figures with ratios against baselines measured in the same run.

    .venv/bin/python benchmarks/bench_local.py [N]

- a trivial call through the whole path (serialize, stage, job.sh, runner, poll, fetch)
  against the floor of starting the same interpreter to run cloudpickle.loads on nothing;
- ``import clustrix`` in a new interpreter against a bare interpreter start, and against
  ``import submitit`` (target: no slower, ratio <= 1.0x);
- 100 trivial calls with default settings (workers; target <= 1.5 s) against one process
  per call (``chunksize=1``);
- 1,000 and 10,000 trivial calls with default settings against ``ProcessPoolExecutor(2)``
  (target <= 3x), paired medians of 3.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import median_seconds, paired_medians

from clustrix import cluster


def main(n: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="clustrix-bench-"))
    trivial = cluster(workdir=str(workdir))(abs)
    trivial(-1)  # warm: session, monitor thread, page cache

    floor = median_seconds(lambda: subprocess.run([sys.executable, "-c", "import cloudpickle"], check=True), n)
    call = median_seconds(lambda: trivial(-1), n)
    print(
        f"trivial call, median of {n}: clustrix local {call * 1000:.1f} ms, "
        f"floor (python -c 'import cloudpickle') {floor * 1000:.1f} ms, ratio {call / floor:.2f}x"
    )

    bare = median_seconds(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), n)
    imported = median_seconds(lambda: subprocess.run([sys.executable, "-c", "import clustrix"], check=True), n)
    print(
        f"import clustrix, median of {n}: {imported * 1000:.1f} ms, bare interpreter {bare * 1000:.1f} ms, "
        f"cost {(imported - bare) * 1000:.1f} ms"
    )
    submitit = median_seconds(lambda: subprocess.run([sys.executable, "-c", "import submitit"], check=True), n)
    print(
        f"import clustrix vs import submitit, median of {n}: {imported * 1000:.1f} ms vs {submitit * 1000:.1f} ms, "
        f"ratio {imported / submitit:.2f}x (target <= 1.0x)"
    )

    def hundred(**options: int) -> float:
        start = time.perf_counter()
        futures = trivial.map(range(-100, 0), **options)
        assert [f.result() for f in futures] == list(range(100, 0, -1))
        return time.perf_counter() - start

    per_call = hundred(chunksize=1)
    workers = hundred()
    print(
        f"100-call map: default settings (workers) {workers:.2f} s (target <= 1.5 s), "
        f"one process per call (chunksize=1) {per_call:.2f} s, ratio {workers / per_call:.2f}x"
    )

    def pool(calls: int) -> None:
        with concurrent.futures.ProcessPoolExecutor(2) as executor:
            assert list(executor.map(abs, range(-calls, 0), chunksize=1)) == list(range(calls, 0, -1))

    def clustrix_map(calls: int) -> None:
        assert [f.result() for f in trivial.map(range(-calls, 0))] == list(range(calls, 0, -1))

    for calls in (1_000, 10_000):
        runs = 3
        base, took, ratio = paired_medians(lambda c=calls: pool(c), lambda c=calls: clustrix_map(c), runs)
        print(
            f"{calls}-call map, medians of {runs}: clustrix (default settings) {took:.2f} s, "
            f"ProcessPoolExecutor(2) {base:.2f} s, ratio {ratio:.1f}x (target <= 3x)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
