"""PBS backend overhead against raw qsub, both against the same real PBS in one run.

    CLUSTRIX_CONFIG=/var/lib/clustrix-test/clustrix.toml .venv/bin/python benchmarks/bench_pbs.py \
        [--profile pbs|pbs-pro] [--n N] [--quick]

Prints figures, never asserts:

1. the floor: ``qsub`` of a script running the same interpreter importing cloudpickle and
   touching a marker file, watched by polling for that file every 50 ms (median of N single jobs);
2. one trivial clustrix call through the whole path (serialize, stage, qsub, qstat polling,
   fetch), median of N, run in turn with the floor, and the median of their N ratios;
3. 100 trivial calls: a raw array of 100 (``qsub -t 0-99``, PBS Pro ``-J 0-99``: the floor)
   against clustrix ``map`` with its default (workers that claim calls) and with static chunks
   of 1 (one array task per call), 10 and 25.

The profile (default ``pbs``) of $CLUSTRIX_CONFIG names the cluster: on the test clusters ``pbs``
is the Torque dialect over Slurm ``main``, ``pbs-pro`` the OpenPBS server. Raw qsub runs the
same commands, from the profile's ``pbs_path``, in the dialect the backend detected.
Other jobs on the cluster (a concurrent test run) slow every figure: run it on an idle cluster.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from timing import paired_medians, timed

from clustrix import cluster

MARKER_POLL = 0.05


def trivial(x: int) -> int:
    return x + 1


def raw_qsub(qsub: str, pro: bool, scratch: Path, tasks: int) -> None:
    """Submit ``tasks`` bare jobs (an array when more than one) and wait for every marker file."""
    markers = scratch / "markers"
    shutil.rmtree(markers, ignore_errors=True)
    markers.mkdir()
    script = scratch / "floor.sh"
    index = "${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-0}}"
    script.write_text(
        f"#!/bin/sh\n#PBS -N floor\n#PBS -l {'select=1:ncpus=1' if pro else 'nodes=1:ppn=1'}\n"
        f"{sys.executable} -c 'import cloudpickle' && touch {markers}/done-{index}\n"
    )
    argv = [qsub, "-o", "/dev/null", "-e", "/dev/null", str(script)]
    if tasks > 1:
        argv[1:1] = ["-J" if pro else "-t", f"0-{tasks - 1}"]
    subprocess.run(argv, check=True, capture_output=True, cwd=scratch)
    while len(list(markers.iterdir())) < tasks:
        time.sleep(MARKER_POLL)


def row(label: str, figure: str, note: str = "") -> None:
    print(f"  {label:<44}{figure}  {note}".rstrip())


def main(profile: str, n: int, calls: int) -> None:
    table = tomllib.loads(Path(os.environ["CLUSTRIX_CONFIG"]).read_text())["profiles"][profile]
    qsub = str(Path(table.get("pbs_path", ""), "qsub")) if table.get("pbs_path") else "qsub"
    os.environ.update(table.get("pbs_env", {}))
    scratch = Path(tempfile.mkdtemp(prefix="clustrix-bench-pbs-"))
    fn = cluster(profile=profile)(trivial)
    # Warm: session, monitor thread, dialect probe, page cache.
    fn(1)
    pro = fn.session().backend.dialect == "pro"
    floor_of = functools.partial(raw_qsub, qsub, pro, scratch)
    floor_of(1)
    print(f"profile {profile} ({fn.session().backend.dialect} dialect)")

    print(f"one trivial call, median of {n}, floor and clustrix in turn:")
    floor, call, ratio = paired_medians(lambda: floor_of(1), lambda: fn(1), n)
    row("floor (raw qsub + 50 ms marker polling)", f"{floor * 1000:6.0f} ms")
    row("clustrix", f"{call * 1000:6.0f} ms", f"{ratio:.2f}x floor (median of the pairs' ratios)")

    print(f"{calls} trivial calls, total:")
    expected = [trivial(x) for x in range(calls)]
    array_floor, _ = timed(lambda: floor_of(calls))
    row(f"floor (raw qsub {'-J' if pro else '-t'} 0-{calls - 1})", f"{array_floor:6.2f} s")
    for chunksize in (None, 1, 10, 25):
        took, values = timed(lambda c=chunksize: [f.result() for f in fn.map(range(calls), chunksize=c)])
        wrong = "" if values == expected else "  WRONG RESULTS"
        label = "clustrix map (workers)" if chunksize is None else f"clustrix map, chunksize {chunksize}"
        row(label, f"{took:6.2f} s", f"{took / array_floor:.2f}x floor{wrong}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="pbs", help="the profile of the PBS to measure (default pbs)")
    parser.add_argument("--n", type=int, help="single calls per median (default 10, quick 3)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--calls", type=int, default=100, help="calls in the many-calls comparison")
    args = parser.parse_args()
    main(args.profile, args.n or (3 if args.quick else 10), args.calls)
