"""clustrix.Executor on the ``local`` backend: a concurrent.futures.Executor whose calls are real jobs."""

from __future__ import annotations

import concurrent.futures
import os
import time

import pytest

import clustrix
from clustrix import ClusterFuture, ConfigError, JobState, cluster
from tests.conftest import wait_for


class SweepError(Exception):
    """Raised by a call: it must come back with this type."""


def nap_then_ident(seconds: float, value: object) -> tuple[object, str, int]:
    time.sleep(seconds)
    return value, os.environ["CLUSTRIX_JOB_ID"], os.getpid()


def fail_on_two(value: int) -> int:
    if value == 2:
        raise SweepError(f"bad value {value}")
    return value


def test_submit_runs_the_call_as_a_job(local_profile):
    with clustrix.Executor(profile=local_profile(), cores=1) as executor:
        future = executor.submit(nap_then_ident, 0.0, value="v")
        assert isinstance(future, ClusterFuture) and isinstance(executor, concurrent.futures.Executor)
        value, job_id, pid = future.result(timeout=60)
    assert (value, job_id) == ("v", future.job_id)
    assert pid != os.getpid()


def test_map_gives_results_in_order_from_one_batch_of_workers(local_profile):
    sleeps = [0.9, 0.6, 0.3, 0.0, 0.0, 0.0]
    with clustrix.Executor(profile=local_profile()) as executor:
        results = list(executor.map(nap_then_ident, sleeps, range(6)))
    assert [value for value, _, _ in results] == list(range(6))
    # The calls ran in the workers of one batch (ids "batch-...:wN-M"), not as a job each.
    batches = {job_id.partition(":")[0] for _, job_id, _ in results}
    assert len(batches) == 1 and batches.pop().startswith("batch-")


def test_map_with_chunksize_makes_static_chunks_instead_of_workers(local_profile):
    with clustrix.Executor(profile=local_profile()) as executor:
        results = list(executor.map(nap_then_ident, [0.0] * 4, range(4), chunksize=2))
    assert [value for value, _, _ in results] == list(range(4))
    # The local backend runs static chunks as one job per call (a scheduler's array task takes a
    # chunk: tests/real_world/test_executors_real.py); what matters here is that no workers ran them.
    assert not any(job_id.startswith("batch-") for _, job_id, _ in results)


@pytest.mark.parametrize("chunksize", [0, -1, 1.5, True])
def test_a_chunksize_that_is_not_a_whole_number_of_at_least_one_is_refused(local_profile, chunksize):
    with clustrix.Executor(profile=local_profile()) as executor, pytest.raises(ConfigError, match="chunksize"):
        executor.map(abs, [1], chunksize=chunksize)


def test_an_exception_comes_back_with_its_own_type(local_profile):
    with clustrix.Executor(profile=local_profile()) as executor:
        with pytest.raises(SweepError, match="bad value 2"):
            executor.submit(fail_on_two, 2).result(timeout=60)
        results = executor.map(fail_on_two, range(4))
        assert [next(results), next(results)] == [0, 1]
        with pytest.raises(SweepError, match="bad value 2"):
            next(results)


def test_map_timeout_raises_timeout_error(local_profile):
    with clustrix.Executor(profile=local_profile()) as executor:
        results = executor.map(nap_then_ident, [30.0], ["late"], timeout=0.5)
        with pytest.raises(TimeoutError):
            next(results)


def test_shutdown_cancel_futures_cancels_the_calls_not_started(local_profile):
    name = local_profile()
    # Each call takes every core of this machine: the second and third wait for the first.
    cores = cluster(profile=name)(abs).session().backend.cores
    executor = clustrix.Executor(profile=name, cores=cores)
    first = executor.submit(nap_then_ident, 2.0, "first")
    waiting = [executor.submit(nap_then_ident, 0.0, n) for n in range(2)]
    wait_for(lambda: first.state is JobState.RUNNING, 60, "the first call to start")
    executor.shutdown(wait=True, cancel_futures=True)
    assert first.result()[0] == "first"
    assert all(future.cancelled() for future in waiting)


def test_the_context_manager_waits_for_the_calls_and_then_refuses_new_ones(local_profile):
    with clustrix.Executor(profile=local_profile()) as executor:
        future = executor.submit(nap_then_ident, 1.0, "done")
    assert future.done() and future.result()[0] == "done"
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(abs, -1)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.map(abs, [-1])


def test_a_bad_profile_or_resource_is_refused_at_construction(local_profile):
    name = local_profile()
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        clustrix.Executor(profile="nope")
    with pytest.raises(ConfigError, match="memory"):
        clustrix.Executor(profile=name, memory="lots")
