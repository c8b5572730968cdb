"""Checkpoint and requeue on the ``local`` backend: real jobs stopped and resumed (tests/checkpoint_cases.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from clustrix import cluster
from clustrix.errors import ConfigError
from tests import checkpoint_cases
from tests.checkpoint_cases import Counter
from tests.conftest import wait_for


def test_a_counter_past_its_time_limit_finishes_after_requeues(local_profile):
    # 40 x 0.5 s in jobs of 10 s (checkpointed 2 s before the limit): three runs when each counts
    # its full 8 s, and still within max_requeues (3) on a loaded machine where each counts 5 s.
    checkpoint_cases.a_counter_past_its_time_limit_finishes_after_requeues(
        local_profile(checkpoint_notice=2), "00:00:10", steps=40, step=0.5, requeues=2, timeout=120
    )


def test_max_requeues_bounds_the_requeues(local_profile):
    checkpoint_cases.max_requeues_bounds_the_requeues(
        local_profile(checkpoint_notice=1), "00:00:03", steps=30, step=0.2, timeout=60
    )


def test_a_term_signal_checkpoints_and_the_job_resumes(local_profile):
    # What a preempting scheduler does: TERM the job's processes, then start it again later.
    fn = cluster(profile=local_profile(), cores=1)(Counter(20, 0.2))
    future = fn.submit(0)
    pid_file = Path(future.job.directory, "pid")
    pid = wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "the job to start")
    # Counting, so the runner is ready to checkpoint (a TERM before that ends the job as it would any).
    wait_for(lambda: "counting from 0" in future.stdout(), 10, "the call to start counting")
    os.killpg(int(pid), signal.SIGTERM)
    value, jobs = future.result(timeout=60)
    assert value == 20
    assert future.job.requeues == 1 and len(jobs) == 2


def test_a_map_of_checkpointable_calls_runs_each_as_its_own_job(local_profile):
    # 12 x 0.5 s in jobs of 6 s (checkpointed 2 s before): two runs each, four allowed under load.
    fn = cluster(profile=local_profile(checkpoint_notice=2), cores=1, time="00:00:06")(Counter(12, 0.5))
    futures = fn.map([0, 100])
    assert [f.result(timeout=120)[0] for f in futures] == [12, 112]
    assert all(f.job.requeues >= 1 for f in futures)
    assert len({f.job_id for f in futures}) == 2


def test_checkpointable_calls_refuse_what_cannot_resume(local_profile):
    name = local_profile()
    with pytest.raises(ConfigError, match="chunksize=2: checkpointable calls each run as a job of their own"):
        cluster(profile=name)(Counter(1, 0)).map([1, 2], chunksize=2)
    with pytest.raises(ConfigError, match="checkpoint_notice=60: must be shorter than the time limit"):
        cluster(profile=name, time="00:01:00", checkpoint_notice=60)(Counter(1, 0)).submit(1)
    counter = cluster(profile=name, time="00:01:00")(Counter(50, 0.2)).submit(1)
    with pytest.raises(ConfigError, match=r"depends on job \w+, a checkpointable call that has not finished"):
        cluster(profile=name)(print).submit(counter)
    assert counter.result(timeout=60)[0] == 51
    with pytest.raises(ConfigError, match="max_requeues=-1"):
        cluster(profile=name, max_requeues=-1)(Counter(1, 0)).submit(1)
