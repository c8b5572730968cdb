"""Slurm backend overhead against raw sbatch, submitit and dask-jobqueue, all against the same real Slurm in one run.

    CLUSTRIX_CONFIG=/var/lib/clustrix-test/clustrix.toml .venv/bin/python benchmarks/bench_slurm.py \
        [--n N] [--quick] [--cap SECONDS]

Prints figures, never asserts (targets are printed next to them):

1. the floor: ``sbatch --wrap`` of the same interpreter importing cloudpickle and touching a
   marker file, watched by polling for that file every 50 ms (median of N single jobs);
2. one trivial clustrix call through the whole path (serialize, stage, sbatch, sacct polling,
   fetch), median of N, and its ratio to the floor (target <= 1.10x);
3. the same call through submitit's ``AutoExecutor``, median of N, and its ratio to the floor;
4. 100 trivial calls: submitit ``map_array`` against clustrix ``map`` with chunksize 10 and 25
   (target: clustrix >= 10x faster), with a raw ``sbatch --array`` of 100 tasks as the floor,
   and clustrix ``map`` with default settings (no chunksize, no tuning: target <= 5 s);
5. 1,000 trivial calls, total: dask-jobqueue's ``SLURMCluster`` (2 worker jobs of 1 core, timed
   from creating the cluster, so the workers' start counts, to the last result of
   ``client.map`` + ``client.gather``; then closed) against clustrix ``map`` with default
   settings (target: clustrix/dask <= 1.5x);
6. load balance, clustrix ``map`` with default settings: 100 calls that each sleep 1 s against
   the ideal (100 s / the partition's CPUs; target <= 1.15x), and 20 calls of 0.1 to 5 s against
   the best static packing of them onto those CPUs (target <= 1.15x);
7. scheduler queries per monitor poll with 1, 10 and 100 outstanding jobs, counted by shims
   on PATH, for the ``slurm`` profile (sacct) and ``slurm-noacct`` (squeue), in the seconds
   right after submission and in a steady window after them: it should be flat (about 1).

Defaults take about 7 minutes on 2 cores, ``--quick`` about 4 (the 100-task arrays dominate),
plus the two default-settings clustrix maps: each is given up (its jobs cancelled) after
``--cap`` seconds (default 300) and printed as "> cap"; ``--cap 0`` skips them.
Other jobs on the cluster (a concurrent test run) slow every figure: run it on an idle cluster;
the last line says how many there were.

Profiles ``slurm`` and ``slurm-noacct`` come from $CLUSTRIX_CONFIG (the test clusters'
clustrix.toml); submitit, dask-jobqueue and raw sbatch use the ``slurm`` profile's slurm.conf
and partition. Dask's scheduler and workers listen on loopback only, dashboards off.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import submitit
from dask.distributed import Client
from dask_jobqueue import SLURMCluster
from timing import median_seconds, timed

from clustrix import cluster

MARKER_POLL = 0.05
MAIN = "slurm"
NOACCT = "slurm-noacct"
QUERIES = ("sacct", "squeue", "scontrol")
SHIMMED = (*QUERIES, "sbatch", "scancel")
MANY = 1000
DASK_JOB = "dask-worker"


def trivial(x: int) -> int:
    return x + 1


def slow(x: int) -> int:
    # Long enough that none of the jobs ends inside the counting windows: they stay outstanding.
    time.sleep(120)
    return x


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def best_packing(durations: list[float], cpus: int) -> float:
    """The shortest makespan of ``durations`` split statically over ``cpus`` (exhaustive for 2)."""
    if cpus != 2:
        return max(max(durations), sum(durations) / cpus)  # a lower bound
    total, best = sum(durations), sum(durations)
    for mask in range(1 << (len(durations) - 1)):  # the last call's side fixed: halves the search
        side = sum(d for i, d in enumerate(durations) if mask >> i & 1)
        best = min(best, max(side, total - side))
    return best


def load_balance(fn, cpus: int) -> None:
    sleeps = [1.0] * 100
    took, values = timed(lambda: [f.result() for f in fn.map(sleeps)])
    ideal = sum(sleeps) / cpus
    row(
        "100 calls of 1 s",
        f"{took:6.2f} s",
        f"{took / ideal:.2f}x ideal {ideal:.0f} s (target <= 1.15x){check(values, sleeps)}",
    )
    mixed = [round(0.1 + (i * 37 % 50) / 10, 1) for i in range(20)]
    took, values = timed(lambda: [f.result() for f in fn.map(mixed)])
    packed = best_packing(mixed, cpus)
    row(
        "20 calls of 0.1 to 5 s",
        f"{took:6.2f} s",
        f"{took / packed:.2f}x best static packing {packed:.1f} s (target <= 1.15x){check(values, mixed)}",
    )


def raw_sbatch(markers: Path, tasks: int) -> None:
    """Submit ``tasks`` bare tasks (an array when more than one) and wait for every marker file."""
    for old in markers.glob("done-*"):
        old.unlink()
    command = f"{sys.executable} -c 'import cloudpickle' && touch {markers}/done-${{SLURM_ARRAY_TASK_ID:-0}}"
    argv = ["sbatch", "--parsable", "-o", "/dev/null", f"--wrap={command}"]
    if tasks > 1:
        argv.insert(1, f"--array=0-{tasks - 1}")
    subprocess.run(argv, check=True, capture_output=True)
    while len(list(markers.glob("done-*"))) < tasks:
        time.sleep(MARKER_POLL)


def default_map(fn, calls: int, cap: float) -> tuple[float, list | None, int]:
    """clustrix ``fn.map(range(calls))`` with default settings, total time; given up after ``cap`` s.

    Returns the time, the values (None when capped: the unfinished jobs are then cancelled)
    and how many calls had finished.
    """
    start = time.perf_counter()
    futures = fn.map(range(calls))
    done, waiting = concurrent.futures.wait(futures, timeout=max(0.0, cap - (time.perf_counter() - start)))
    took = time.perf_counter() - start
    if not waiting:
        return took, [future.result() for future in futures], len(done)
    fn.session().cancel([future.job for future in waiting])
    if concurrent.futures.wait(waiting, timeout=120).not_done:
        print(f"  clustrix map: cancelled jobs of {len(waiting)} calls still unresolved after 120 s")
    return took, None, len(done)


def capped(took: float, values: list | None, done: int, calls: int) -> str:
    return f"{took:6.2f} s" if values is not None else f"> {took:4.0f} s (capped, {done}/{calls} done)"


def dask_map(calls: int, profile: dict, logs: Path) -> tuple[float, list]:
    """dask-jobqueue: cluster of 2 one-core worker jobs, ``calls`` trivial calls, closed; total time."""
    start = time.perf_counter()
    dask_cluster = SLURMCluster(
        n_workers=2,
        cores=1,
        processes=1,
        memory="512MiB",
        walltime="00:10:00",
        queue=profile.get("partition"),
        job_name=DASK_JOB,
        python=sys.executable,
        # Only if the workers run Slurm commands (sbatch's default --export=ALL passes it too).
        job_script_prologue=[f"export SLURM_CONF={profile['slurm_conf']}"],
        log_directory=str(logs),
        # Loopback only: the scheduler and the workers (and their nannies) bind to lo, and every
        # HTTP server (dashboards off, but the servers still start) to 127.0.0.1.
        interface="lo",
        scheduler_options={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        worker_extra_args=["--no-dashboard", "--dashboard-address", "127.0.0.1:0"],
    )
    job_ids = []
    try:
        with Client(dask_cluster) as client:
            values = client.gather(client.map(trivial, range(calls)))
            took = time.perf_counter() - start
            job_ids = [job.job_id for job in dask_cluster.workers.values() if job.job_id]
    finally:
        dask_cluster.close()  # scancels the worker jobs
    # Let the cancelled worker jobs leave the 2 cores before the next figure.
    deadline = time.monotonic() + 60
    while job_ids and time.monotonic() < deadline:
        argv = ["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)]
        if not subprocess.run(argv, capture_output=True, text=True).stdout.strip():
            break
        time.sleep(0.5)
    return took, values


def check(values: list | None, expected: list) -> str:
    # A wrong answer makes the timing meaningless; say so rather than abort the other figures.
    # None: a capped run, whose results were not all there (its row says so).
    return "" if values is None or values == expected else "  WRONG RESULTS"


def row(label: str, figure: str, note: str = "") -> None:
    print(f"  {label:<44}{figure}  {note}".rstrip())


def install_shims(directory: Path) -> Path:
    """Put counting wrappers of the Slurm commands first on PATH; returns the file they append to."""
    directory.mkdir()
    counter = directory / "calls"
    counter.touch()
    for name in SHIMMED:
        shim = directory / name
        shim.write_text(f'#!/bin/sh\necho {name} >> {counter}\nexec /usr/bin/{name} "$@"\n')
        shim.chmod(0o755)
    # The local transport starts every command with this process's environment.
    os.environ["PATH"] = f"{directory}:{os.environ['PATH']}"
    return counter


def after_poll(monitor, counter: Path) -> tuple[collections.Counter, int]:
    """Commands run so far and the poll count, taken just after a poll ended.

    A poll runs its commands before it counts itself; reading both mid-poll would count
    a query without its poll. Right after the count moves, the monitor is waiting.
    """
    polls = monitor.polls
    while monitor.polls == polls:
        time.sleep(0.005)
    return collections.Counter(counter.read_text().split()), monitor.polls


def queries_per_poll(profile: str, counter: Path, settle: float, window: float) -> None:
    """Keep 1, 10, 100 jobs outstanding; print queries per poll just after submission, then steady."""
    # cleanup="always": the cancelled jobs' directories go too. Own session, so warm it first
    # (the accounting probe runs on its first poll and must not land in a window).
    settings = {"profile": profile, "cleanup": "always"}
    cluster(**settings)(trivial)(1)
    fn = cluster(**settings)(slow)
    monitor = fn.session().monitor
    for batch in (1, 10, 100):
        # chunksize=1: one array task per call (a single job for a batch of one).
        futures = fn.map(range(batch), chunksize=1)
        # Two windows: slurmdbd records a new job seconds after sbatch, and until then the
        # backend asks squeue as well; after that, the steady state.
        for label, seconds in ((f"first ~{settle:g} s", settle), (f"next ~{window:g} s", window)):
            before, polls = after_poll(monitor, counter)
            time.sleep(seconds)
            seen, polled = after_poll(monitor, counter)
            seen, polled = seen - before, polled - polls
            queries = sum(seen[name] for name in QUERIES)
            detail = ", ".join(f"{name} {seen[name]}" for name in QUERIES)
            per_poll = f"{queries / polled:.2f}" if polled else "n/a"
            print(
                f"  {profile:<12} {batch:>3} outstanding, {label:<11} {polled:>3} polls, "
                f"{queries:>3} queries ({detail}): {per_poll} per poll"
            )
        fn.session().cancel([future.job for future in futures])
        waiting = concurrent.futures.wait(futures, timeout=120).not_done
        if waiting:
            print(f"  {profile}: {len(waiting)} cancelled jobs still unresolved after 120 s")


def other_jobs(since: str) -> int:
    """Jobs on the main cluster since ``since`` that this benchmark did not submit."""
    ours = {trivial.__name__, slow.__name__, "submitit", "wrap", DASK_JOB}
    argv = ["sacct", "-n", "-P", "-X", "-S", since, "-o", "JobName"]
    names = subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()
    return sum(name not in ours for name in names)


def main(n: int, calls: int, settle: float, window: float, cap: float) -> None:
    profiles = tomllib.loads(Path(os.environ["CLUSTRIX_CONFIG"]).read_text())["profiles"]
    # submitit, dask-jobqueue and raw sbatch run Slurm's commands with this process's environment.
    os.environ["SLURM_CONF"] = profiles[MAIN]["slurm_conf"]
    scratch = Path(tempfile.mkdtemp(prefix="clustrix-bench-"))
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    markers = scratch / "markers"
    markers.mkdir()

    clustrix_fn = cluster(profile=MAIN)(trivial)
    executor = submitit.AutoExecutor(folder=scratch / "submitit", cluster="slurm")
    executor.update_parameters(slurm_partition="debug", timeout_min=10, mem_gb=0.1, cpus_per_task=1)
    # Warm both: session, monitor thread, accounting probe, page cache; submitit's first job
    # is several seconds slower than the rest.
    clustrix_fn(1)
    executor.submit(trivial, 1).result()

    print(f"one trivial call, median of {n}:")
    floor = median_seconds(lambda: raw_sbatch(markers, 1), n)
    row("floor (raw sbatch + 50 ms marker polling)", f"{floor * 1000:6.0f} ms")
    call = median_seconds(lambda: clustrix_fn(1), n)
    row("clustrix", f"{call * 1000:6.0f} ms", f"{call / floor:.2f}x floor (target <= 1.10x)")
    sub = median_seconds(lambda: executor.submit(trivial, 1).result(), n)
    row("submitit", f"{sub * 1000:6.0f} ms", f"{sub / floor:.2f}x floor")

    print(f"{calls} trivial calls, total:")
    expected = [trivial(x) for x in range(calls)]
    array_floor, _ = timed(lambda: raw_sbatch(markers, calls))
    row(f"floor (raw sbatch --array of {calls} tasks)", f"{array_floor:6.2f} s")
    took_sub, values = timed(lambda: [job.result() for job in executor.map_array(trivial, range(calls))])
    row("submitit map_array", f"{took_sub:6.2f} s", check(values, expected))
    for chunksize in (10, 25):
        took, values = timed(lambda c=chunksize: [f.result() for f in clustrix_fn.map(range(calls), chunksize=c)])
        note = f"submitit/clustrix {took_sub / took:.1f}x (target >= 10x){check(values, expected)}"
        row(f"clustrix map, chunksize {chunksize}", f"{took:6.2f} s", note)
    if cap > 0:
        took, values, done = default_map(clustrix_fn, calls, cap)
        note = f"target <= 5 s, submitit/clustrix {'' if values is not None else '< '}{took_sub / took:.1f}x"
        row("clustrix map, default settings", capped(took, values, done, calls), note + check(values, expected))

    print(f"{MANY} trivial calls, total:")
    expected = [trivial(x) for x in range(MANY)]
    took_dask, values = dask_map(MANY, profiles[MAIN], scratch / "dask")
    row("dask-jobqueue (2 workers, start to gather)", f"{took_dask:6.2f} s", check(values, expected))
    if cap > 0:
        took, values, done = default_map(clustrix_fn, MANY, cap)
        note = f"clustrix/dask {'' if values is not None else '> '}{took / took_dask:.2f}x (target <= 1.5x)"
        row("clustrix map, default settings", capped(took, values, done, MANY), note + check(values, expected))

    cpus = int(subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True).stdout.split("/")[-1])
    print(f"load balance on {cpus} CPUs, default settings:")
    load_balance(cluster(profile=MAIN, cores=1)(nap), cpus)

    # Shims only now: submitit and dask are done, and the timings above must not pay for the wrappers.
    counter = install_shims(scratch / "shims")
    print("scheduler queries (sacct+squeue+scontrol) per monitor poll, by outstanding jobs:")
    for profile in (MAIN, NOACCT):
        queries_per_poll(profile, counter, settle, window)

    # The cluster has 2 cores: anyone else's jobs in the meantime skew every timing above.
    others = other_jobs(since)
    print(f"other jobs on the {MAIN} cluster during this run: {others}" + (" (timings disturbed)" if others else ""))
    # Only on success: after a failure, submitit's logs in there say why.
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, help="single calls per median (default 10, quick 3)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and shorter counting windows")
    parser.add_argument("--calls", type=int, default=100, help="calls in the many-calls comparison")
    parser.add_argument(
        "--cap", type=float, default=300.0, help="seconds before a default-settings clustrix map is given up; 0 skips"
    )
    args = parser.parse_args()
    if args.quick:
        main(args.n or 3, args.calls, settle=6.0, window=8.0, cap=args.cap)
    else:
        main(args.n or 10, args.calls, settle=10.0, window=20.0, cap=args.cap)
