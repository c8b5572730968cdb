"""What workers that claim calls must do, written once for every backend that runs them.

Each case takes a profile name and checks what really happened: which worker ran each
call (its own ``CLUSTRIX_JOB_ID``), what a call over its limit raised, which results
survived workers killed with SIGKILL on the host.
"""

from __future__ import annotations

import os
import sys
import time

import cloudpickle
import pytest

from clustrix import cluster
from clustrix.errors import ClustrixError, JobOutOfMemoryError, JobTimeoutError, NodeFailureError
from clustrix.state import JobState
from tests.conftest import wait_for

# Cases travel by value: a cluster's Python cannot import this checkout's tests.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def square_where(x: int) -> tuple[int, str]:
    return x * x, os.environ["CLUSTRIX_JOB_ID"]


def sleep_then(seconds: float) -> str:
    time.sleep(seconds)
    return os.environ["CLUSTRIX_JOB_ID"]


def a_map_is_drained_by_as_many_workers_as_the_cores_hold(profile: str) -> None:
    fn = cluster(profile=profile, cores=1)(square_where)
    futures = fn.map(range(50))
    results = [f.result(timeout=120) for f in futures]
    assert [r[0] for r in results] == [x * x for x in range(50)]
    used = {r[1] for r in results}
    cores = fn.session().backend.cores
    assert 1 <= len(used) <= cores, f"{len(used)} workers on {cores} cores: {sorted(used)}"
    assert all(":w0-" in worker for worker in used), used


def import_then(crash: bool) -> tuple[int, str, bool]:
    """This call's process and worker, and whether an earlier call of that process imported ``colorsys``
    (nothing of clustrix's does); ``crash``: end the process without a word instead."""
    import sys

    warm = "colorsys" in sys.modules
    import colorsys  # noqa: F401

    if crash:
        os._exit(7)
    time.sleep(0.3)  # every worker keeps claiming until the map is drained, the one that met the crash too
    return os.getpid(), os.environ["CLUSTRIX_JOB_ID"], warm


def a_worker_runs_its_calls_in_one_warm_process_until_one_crashes(profile: str) -> None:
    fn = cluster(profile=profile, cores=1)(import_then)
    crash = 4
    futures = fn.map([i == crash for i in range(12)])
    with pytest.raises(ClustrixError, match="exit code 7"):
        futures[crash].result(timeout=120)
    crashed_in = fn.session().backend.pool.scheduler_job(futures[crash].job_id)
    runs = {i: f.result(timeout=120) for i, f in enumerate(futures) if i != crash}
    by_worker: dict[str, list[tuple[int, int, bool]]] = {}
    for i, (pid, worker, warm) in sorted(runs.items()):
        by_worker.setdefault(worker, []).append((i, pid, warm))
    assert crashed_in in by_worker, f"the worker that met the crash ran the calls it claimed next: {by_worker}"
    for worker, calls in by_worker.items():
        # A worker claims in index order. One process ran its calls; in the worker that met the
        # crash, one before it and a new one after it. Each process's first call imported colorsys.
        before = {pid for i, pid, _ in calls if i < crash}
        after = {pid for i, pid, _ in calls if i > crash}
        assert len(before) <= 1 and len(after) == 1, (worker, calls)
        assert before.isdisjoint(after) if worker == crashed_in else not before or before == after, (worker, calls)
        first_of: dict[int, int] = {}
        for i, pid, warm in calls:
            assert warm == (pid in first_of), f"call {i} in process {pid} of {worker}: warm={warm}"
            first_of.setdefault(pid, i)


def a_call_over_its_time_limit_fails_alone(profile: str) -> None:
    fn = cluster(profile=profile, cores=1, time="00:00:03")(sleep_then)
    started = time.monotonic()
    futures = fn.map([0.1, 60, 0.1, 0.1, 0.1])
    with pytest.raises(JobTimeoutError, match="killed by its worker at the call's time limit"):
        futures[1].result(timeout=120)
    assert all(f.result(timeout=60) for i, f in enumerate(futures) if i != 1)
    assert time.monotonic() - started < 50, "the call was killed at its limit, not left to sleep"


def hold_memory(megabytes: int) -> int:
    return len(b"x" * (megabytes * 1024**2))


def a_call_out_of_memory_fails_alone(profile: str) -> None:
    fn = cluster(profile=profile, cores=1, memory="300MB")(hold_memory)
    futures = fn.map([1, 2000, 1, 1])
    with pytest.raises(JobOutOfMemoryError, match="out of memory inside its worker") as info:
        futures[1].result(timeout=120)
    assert isinstance(info.value.__cause__, MemoryError), "the call's own MemoryError is the cause"
    assert [f.result(timeout=60) for i, f in enumerate(futures) if i != 1] == [1024**2] * 3


def kill_every_worker(backend) -> None:
    """SIGKILL the process group of every first worker on the host, as its OOM killer or an admin would."""
    kill = 'for p in "$1"/batch-*/w0-*/pid; do kill -9 -"$(cat "$p")" 2>/dev/null; done'
    backend.transport.run(["sh", "-c", kill, "sh", backend.workdir])


def killed_workers_lose_no_result_and_new_ones_finish_the_map(profile: str) -> None:
    fn = cluster(profile=profile, cores=1, poll_interval=0.2, poll_interval_max=0.5)(sleep_then)
    futures = fn.map([1.0] * 10)
    wait_for(lambda: sum(f.done() for f in futures) >= 2, 60, "a few calls to end")
    finished = {i: f.result() for i, f in enumerate(futures) if f.done()}
    backend = fn.session().backend
    kill_every_worker(backend)
    outcomes = {}
    for i, f in enumerate(futures):
        try:
            outcomes[i] = f.result(timeout=120)
        except NodeFailureError as exc:
            assert "ended NODE_FAIL during the call" in str(exc)
            outcomes[i] = None
    assert {i: outcomes[i] for i in finished} == finished, "finished calls keep their results"
    lost = [i for i, worker in outcomes.items() if worker is None]
    assert len(lost) <= backend.cores, f"only the calls running in the killed workers fail: {outcomes}"
    assert any(worker and ":w1-" in worker for worker in outcomes.values()), "new workers ran the rest"


def calls_whose_workers_are_killed_run_again_with_retries(profile: str) -> None:
    fn = cluster(profile=profile, cores=1, retries=2, poll_interval=0.2, poll_interval_max=0.5)(sleep_then)
    futures = fn.map([1.0] * 10)
    ids = [f.job_id for f in futures]
    wait_for(lambda: sum(f.done() for f in futures) >= 2, 60, "a few calls to end")
    backend = fn.session().backend
    kill_every_worker(backend)
    workers_used = [f.result(timeout=180) for f in futures]
    assert all(":w" in worker for worker in workers_used), "every call returned, the killed ones too"
    retried = [f for f in futures if f.job.retries]
    assert 1 <= len(retried) <= backend.cores, f"the calls running in the killed workers ran again: {retried}"
    for future in retried:
        states = [state for state, _ in future.job.history]
        assert states.count(JobState.REQUEUED) == future.job.retries == 1, states
        assert states[-1] is JobState.COMPLETED
    # Back in their batch's queue, run by the new workers: the same call ids, no job of their own.
    assert [f.job_id for f in futures] == ids
    assert all(":w1-" in future.result() for future in retried), "new workers ran them"
