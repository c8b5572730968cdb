"""``pmap`` inside a job: real worker processes on the job's cores when ``parallel=True``."""

from __future__ import annotations

from clustrix import cluster, pmap


def spans_in_job(n):
    import os
    import time

    def work(i):
        start = time.time()
        time.sleep(1.0)
        return i * i, os.getpid(), start, time.time()

    return pmap(work, range(n)), os.environ.get("CLUSTRIX_PARALLEL")


def test_parallel_iterations_overlap_in_different_processes(local_profile):
    results, flag = cluster(profile=local_profile(), cores=2, parallel=True)(spans_in_job)(2)
    assert flag == "1"
    assert [r[0] for r in results] == [0, 1]
    (_, pid_a, start_a, end_a), (_, pid_b, start_b, end_b) = results
    assert pid_a != pid_b
    assert start_a < end_b and start_b < end_a, "the two iterations must have run at the same time"


def test_without_parallel_iterations_run_serially_in_the_job_process(local_profile):
    results, flag = cluster(profile=local_profile(), cores=2)(spans_in_job)(2)
    assert flag is None
    (_, pid_a, _, end_a), (_, pid_b, start_b, _) = results
    assert pid_a == pid_b
    assert start_b >= end_a


def test_pmap_outside_a_job_is_a_plain_map():
    assert pmap(lambda x: x + 1, [1, 2, 3]) == [2, 3, 4]
