"""What workers that claim calls must do on the process backends, written once for ``local`` and ``ssh``.

Each case takes a profile name and checks what really happened: which worker ran each
call (its own ``CLUSTRIX_JOB_ID``), what a call over its limit raised, which results
survived workers killed with SIGKILL on the host.
"""

from __future__ import annotations

import os
import time

import pytest

from clustrix import cluster
from clustrix.errors import JobOutOfMemoryError, JobTimeoutError, NodeFailureError
from tests.conftest import wait_for


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


def killed_workers_lose_no_result_and_new_ones_finish_the_map(profile: str) -> None:
    fn = cluster(profile=profile, cores=1, poll_interval=0.2, poll_interval_max=0.5)(sleep_then)
    futures = fn.map([1.0] * 10)
    wait_for(lambda: sum(f.done() for f in futures) >= 2, 60, "a few calls to end")
    finished = {i: f.result() for i, f in enumerate(futures) if f.done()}
    backend = fn.session().backend
    workdir = backend.workdir
    # SIGKILL every worker's process group, as the host's OOM killer or an admin would.
    backend.transport.run(
        ["sh", "-c", 'for p in "$1"/batch-*/w0-*/pid; do kill -9 -"$(cat "$p")" 2>/dev/null; done', "sh", workdir]
    )
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
