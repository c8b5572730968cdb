"""SGE backend overhead against raw qsub, both against the same real Grid Engine in one run.

    CLUSTRIX_CONFIG=/var/lib/clustrix-test/clustrix.toml .venv/bin/python benchmarks/bench_sge.py [--n N] [--quick]

Prints figures, never asserts:

1. the floor: ``qsub`` of a script running the same interpreter importing cloudpickle and
   touching a marker file, watched by polling for that file every 50 ms (median of N single jobs),
   and the same job watched the way a scheduler client must: ``qstat -j`` every 50 ms until SGE
   no longer lists it (execd reports a job's end to qmaster about a second after it);
2. one trivial clustrix call through the whole path (serialize, stage, qsub, qstat/qacct
   polling, fetch), median of N, and its ratio to the floor;
3. 100 trivial calls: a raw ``qsub -t 1-100`` array (the floor) against clustrix ``map`` with
   chunksize 1 (one array task per call), 10 and 25;
4. scheduler commands per monitor poll during the chunksize-1 map (qstat, qacct).

The ``sge`` profile of $CLUSTRIX_CONFIG names the cluster and its queue. SGE's own scheduling
interval dominates every figure (1 s on the test cluster, 15 s by default elsewhere). Other jobs
on the cluster (a concurrent test run) slow every figure: run it on an idle cluster.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from timing import median_seconds, timed

from clustrix import cluster
from clustrix.api import ClusterFunction

PROFILE = "sge"
MARKER_POLL = 0.05


def trivial(x: int) -> int:
    return x + 1


def raw_qsub(scratch: Path, queue: str, tasks: int) -> None:
    """Submit ``tasks`` bare jobs (an array when more than one) and wait for every marker file."""
    markers = scratch / "markers"
    shutil.rmtree(markers, ignore_errors=True)
    markers.mkdir()
    script = scratch / "floor.sh"
    script.write_text(
        f"#!/bin/bash\n{sys.executable} -c 'import cloudpickle' && touch {markers}/done-${{SGE_TASK_ID}}\n"
    )
    argv = ["qsub", "-terse", "-S", "/bin/bash", "-q", queue, "-o", "/dev/null", "-e", "/dev/null"]
    if tasks > 1:
        argv += ["-t", f"1-{tasks}"]
    subprocess.run([*argv, str(script)], check=True, capture_output=True)
    while len(list(markers.iterdir())) < tasks:
        time.sleep(MARKER_POLL)


def raw_qsub_until_gone(scratch: Path, queue: str) -> None:
    """The scheduler's own view: submit one bare job and poll ``qstat -j`` until SGE no longer lists it."""
    script = scratch / "gone.sh"
    script.write_text(f"#!/bin/bash\n{sys.executable} -c 'import cloudpickle'\n")
    argv = ["qsub", "-terse", "-S", "/bin/bash", "-q", queue, "-o", "/dev/null", "-e", "/dev/null", str(script)]
    job = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()
    while subprocess.run(["qstat", "-j", job], capture_output=True).returncode == 0:
        time.sleep(MARKER_POLL)


def row(label: str, figure: str, note: str = "") -> None:
    print(f"  {label:<46}{figure}  {note}".rstrip())


def check(values: list, expected: list) -> str:
    return "" if values == expected else "  WRONG RESULTS"


def counted_map(fn, calls: int) -> tuple[float, list, list[collections.Counter]]:
    """A chunksize-1 map with the SGE commands of every monitor poll counted."""
    session = fn.session()
    per_poll: list[collections.Counter] = []
    current: collections.Counter = collections.Counter()
    real_run, real_poll = session.transport.run, session.backend.poll

    def counting_run(argv, **kwargs):
        current[argv[0]] += 1
        return real_run(argv, **kwargs)

    def counting_poll(job_ids):
        current.clear()
        statuses = real_poll(job_ids)
        per_poll.append(collections.Counter(current))
        return statuses

    session.transport.run, session.backend.poll = counting_run, counting_poll
    try:
        took, values = timed(lambda: [f.result() for f in fn.map(range(calls), chunksize=1)])
    finally:
        del session.transport.run, session.backend.poll
    return took, values, per_poll


def main(n: int, calls: int) -> None:
    profile = tomllib.loads(Path(os.environ["CLUSTRIX_CONFIG"]).read_text())["profiles"][PROFILE]
    queue = profile.get("queue", "all.q")
    scratch = Path(tempfile.mkdtemp(prefix="clustrix-bench-sge-"))
    fn = cluster(profile=PROFILE)(trivial)
    fn(1)  # warm: session, monitor thread, page cache

    print(f"one trivial call, median of {n}:")
    floor = median_seconds(lambda: raw_qsub(scratch, queue, 1), n)
    row("floor (raw qsub + 50 ms marker polling)", f"{floor * 1000:6.0f} ms")
    gone = median_seconds(lambda: raw_qsub_until_gone(scratch, queue), n)
    row("raw qsub until qstat no longer lists it", f"{gone * 1000:6.0f} ms", "(SGE reports an end ~1 s late)")
    call = median_seconds(lambda: fn(1), n)
    row("clustrix", f"{call * 1000:6.0f} ms", f"{call / floor:.2f}x floor, {call / gone:.2f}x qstat's view")
    if calls:
        many_calls(fn, scratch, queue, calls)
    shutil.rmtree(scratch, ignore_errors=True)


def many_calls(fn: ClusterFunction, scratch: Path, queue: str, calls: int) -> None:
    print(f"{calls} trivial calls, total:")
    expected = [trivial(x) for x in range(calls)]
    array_floor, _ = timed(lambda: raw_qsub(scratch, queue, calls))
    row(f"floor (raw qsub -t 1-{calls})", f"{array_floor:6.2f} s")
    took, values, per_poll = counted_map(fn, calls)
    row("clustrix map, chunksize 1 (a task per call)", f"{took:6.2f} s", f"{took / array_floor:.2f}x floor")
    for chunksize in (10, 25):
        took, values = timed(lambda c=chunksize: [f.result() for f in fn.map(range(calls), chunksize=c)])
        row(f"clustrix map, chunksize {chunksize}", f"{took:6.2f} s", f"{took / array_floor:.2f}x floor")
        print(check(values, expected) or "", end="")

    print("SGE commands per monitor poll during the chunksize-1 map:")
    for name in ("qstat", "qacct"):
        counts = [poll[name] for poll in per_poll]
        row(name, f"max {max(counts)}, mean {sum(counts) / len(counts):.2f}", f"over {len(counts)} polls")
    others = set().union(*per_poll) - {"qstat", "qacct"}
    if others:
        row("other commands", ", ".join(f"{c} {sum(p[c] for p in per_poll)}" for c in sorted(others)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, help="single calls per median (default 10, quick 3)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--calls", type=int, default=100, help="calls in the many-calls comparison (0: none)")
    args = parser.parse_args()
    main(args.n or (3 if args.quick else 10), args.calls)
