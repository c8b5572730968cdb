"""Slurm backend overhead, printed as figures with ratios against raw sbatch measured in the same run.

    CLUSTRIX_CONFIG=/var/lib/clustrix-test/clustrix.toml .venv/bin/python benchmarks/bench_slurm.py [PROFILE] [N] [M]

- one trivial call through the whole path (serialize, stage, sbatch, sacct polling, fetch)
  against the floor: ``sbatch --wrap`` of the same interpreter importing cloudpickle and
  touching a marker file, watched by polling for that file every 50 ms;
- a map of M calls (one array job), chunksize 1 and 10, against a raw ``sbatch --array``
  of the same M tasks watched the same way.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from clustrix import cluster

MARKER_POLL = 0.05


def median_seconds(fn, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def raw_sbatch(env: dict[str, str], markers: Path, tasks: int) -> None:
    """Submit ``tasks`` bare tasks (an array when more than one) and wait for every marker file."""
    for old in markers.glob("done-*"):
        old.unlink()
    command = f"{sys.executable} -c 'import cloudpickle' && touch {markers}/done-${{SLURM_ARRAY_TASK_ID:-0}}"
    argv = ["sbatch", "--parsable", "-o", "/dev/null", f"--wrap={command}"]
    if tasks > 1:
        argv.insert(1, f"--array=0-{tasks - 1}")
    subprocess.run(argv, check=True, capture_output=True, env=env)
    while len(list(markers.glob("done-*"))) < tasks:
        time.sleep(MARKER_POLL)


def main(profile: str, n: int, m: int) -> None:
    profiles = tomllib.loads(Path(os.environ["CLUSTRIX_CONFIG"]).read_text())["profiles"]
    env = {**os.environ, "SLURM_CONF": profiles[profile]["slurm_conf"]}
    markers = Path(tempfile.mkdtemp(prefix="clustrix-bench-"))
    trivial = cluster(profile=profile)(abs)
    trivial(-1)  # warm: session, monitor thread, accounting probe, page cache

    floor = median_seconds(lambda: raw_sbatch(env, markers, 1), n)
    call = median_seconds(lambda: trivial(-1), n)
    print(
        f"trivial call, median of {n}: clustrix {call * 1000:.0f} ms, "
        f"floor (raw sbatch + marker polling) {floor * 1000:.0f} ms, ratio {call / floor:.2f}x"
    )

    array_floor = median_seconds(lambda: raw_sbatch(env, markers, m), 1)
    for chunksize in (1, 10):
        start = time.perf_counter()
        futures = trivial.map(range(-m, 0), chunksize=chunksize)
        assert [f.result() for f in futures] == list(range(m, 0, -1))
        took = time.perf_counter() - start
        print(
            f"{m}-call map, chunksize {chunksize}: clustrix {took:.2f} s, "
            f"floor (raw sbatch --array of {m} tasks) {array_floor:.2f} s, ratio {took / array_floor:.2f}x"
        )


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "slurm", int(args[1]) if len(args) > 1 else 10, int(args[2]) if len(args) > 2 else 40)
