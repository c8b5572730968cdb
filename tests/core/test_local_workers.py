"""Workers that claim calls on the ``local`` backend (cases in tests/worker_cases.py)."""

from __future__ import annotations

import time

from clustrix import cluster, workers
from tests import worker_cases


def test_a_map_is_drained_by_as_many_workers_as_the_cores_hold(local_profile):
    worker_cases.a_map_is_drained_by_as_many_workers_as_the_cores_hold(local_profile())


def test_a_worker_runs_its_calls_in_one_warm_process_until_one_crashes(local_profile):
    worker_cases.a_worker_runs_its_calls_in_one_warm_process_until_one_crashes(local_profile())


def test_a_call_over_its_time_limit_fails_alone(local_profile):
    worker_cases.a_call_over_its_time_limit_fails_alone(local_profile())


def test_a_call_out_of_memory_fails_alone(local_profile):
    worker_cases.a_call_out_of_memory_fails_alone(local_profile())


def test_killed_workers_lose_no_result_and_new_ones_finish_the_map(local_profile):
    worker_cases.killed_workers_lose_no_result_and_new_ones_finish_the_map(local_profile())


def test_calls_whose_workers_are_killed_run_again_with_retries(local_profile):
    worker_cases.calls_whose_workers_are_killed_run_again_with_retries(local_profile())


def test_a_job_after_a_map_gets_the_cores_its_workers_held(local_profile):
    # A worker ends a moment after its last call. Reading the batch's files late (here: 1.5 s
    # after the workers' states) makes that moment fall between the two reads of one poll: the
    # monitor then has nothing left to watch, yet the worker's cores must still come back.
    name = local_profile()
    fn = cluster(profile=name, cores=1)(worker_cases.sleep_then)
    backend = fn.session().backend
    real_run = backend.transport.run

    def late_listing(argv, **kwargs):
        if argv[:3] == ["sh", "-c", workers.LISTING]:
            time.sleep(1.5)
        return real_run(argv, **kwargs)

    backend.transport.run = late_listing
    try:
        assert len([f.result(timeout=60) for f in fn.map([0.0, 1.0])]) == 2
    finally:
        del backend.transport.run
    whole_host = cluster(profile=name, cores=backend.cores)(abs)
    assert whole_host.submit(-3).result(timeout=60) == 3


def test_a_file_written_into_a_directory_while_it_is_removed_is_removed_too(tmp_path, monkeypatch):
    # A worker still ending writes its EXIT trap's record into its task directory while the client
    # removes the batch: the first removal then fails on the directory it refilled, and left the
    # batch behind for ever.
    import shutil

    from clustrix.config import ClusterConfig
    from clustrix.transport import LocalTransport

    batch = tmp_path / "batch"
    (batch / "task-0-1").mkdir(parents=True)
    (batch / "task-0-1" / "runner.log").write_text("ran")
    real_rmtree = shutil.rmtree
    attempts = []

    def trap_lands_mid_removal(path, ignore_errors=False):
        attempts.append(path)
        if len(attempts) == 1:
            real_rmtree(batch / "task-0-1", ignore_errors=ignore_errors)
            (batch / "task-0-1").mkdir()
            (batch / "task-0-1" / "job_end").write_text("0\n")
            return
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(shutil, "rmtree", trap_lands_mid_removal)
    LocalTransport(ClusterConfig(None, "local", "local")).remove_trees([str(batch)])
    assert not batch.exists() and len(attempts) == 2
