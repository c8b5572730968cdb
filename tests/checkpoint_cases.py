"""Checkpoint and requeue, written once for every backend that resumes checkpoints.

A ``Counter`` counts up to ``steps`` one ``step`` at a time: more steps than fit in its
time limit finish only if each job checkpoints before the limit and the next resumes
where it stopped. Every case checks what really happened: the value, how often the job
was submitted again, its state history, and which runs resumed (meta.json).
"""

from __future__ import annotations

import os
import time

import pytest

from clustrix import cluster
from clustrix.errors import JobTimeoutError
from clustrix.state import JobState
from clustrix.validation import ClusterJobValidator


class Counter:
    """Counts ``steps``; a job that is stopped resumes the count (its ``checkpoint`` returns itself)."""

    def __init__(self, steps: int, step: float) -> None:
        self.steps, self.step, self.done = steps, step, 0
        self.jobs: list[str] = []

    def __call__(self, start: int) -> tuple[int, list[str]]:
        self.jobs.append(os.environ.get("CLUSTRIX_JOB_ID", "?"))
        print(f"counting from {self.done}", flush=True)
        while self.done < self.steps:
            time.sleep(self.step)
            self.done += 1
        return start + self.done, self.jobs

    def checkpoint(self, start: int) -> Counter:
        return self


class PlainCounter:
    """The same count, with no way to resume it."""

    def __init__(self, steps: int, step: float) -> None:
        self.steps, self.step = steps, step

    def __call__(self, start: int) -> int:
        for _ in range(self.steps):
            time.sleep(self.step)
        return start + self.steps


class GivesUp(Counter):
    """Asked to checkpoint, declines (returns None): the job runs on to its limit."""

    def checkpoint(self, start: int) -> None:
        return None


def a_counter_past_its_time_limit_finishes_after_requeues(
    profile: str, limit: str, steps: int, step: float, requeues: int, timeout: float
) -> None:
    """``steps`` x ``step`` needs ``requeues`` + 1 jobs of ``limit``; a plain counter times out."""
    fn = cluster(profile=profile, cores=1, time=limit)(Counter(steps, step))
    plain = cluster(profile=profile, cores=1, time=limit)(PlainCounter(steps, step))
    future, plain_future = fn.submit(1000), plain.submit(1000)
    validator = ClusterJobValidator()
    result = validator.validate(future, value_check=lambda v: v[0] == 1000 + steps, timeout=timeout)
    value, jobs = future.result(timeout=1)
    assert value == 1000 + steps
    assert future.job.requeues >= requeues, f"{future.job.requeues} requeues, at least {requeues} needed"
    assert len(jobs) == future.job.requeues + 1, f"one run per job: {jobs}"
    assert jobs[-1] == future.job_id
    states = [state for state, _ in future.job.history]
    assert states.count(JobState.REQUEUED) == future.job.requeues, states
    assert states[-1] is JobState.COMPLETED
    assert result.passed, result.failures()
    assert result.requeues == future.job.requeues
    assert future.job.meta["resumed"] is True
    with pytest.raises(JobTimeoutError):
        plain_future.result(timeout=timeout)
    assert plain_future.job.requeues == 0


def max_requeues_bounds_the_requeues(profile: str, limit: str, steps: int, step: float, timeout: float) -> None:
    fn = cluster(profile=profile, cores=1, time=limit, max_requeues=1)(Counter(steps, step))
    declines = cluster(profile=profile, cores=1, time=limit)(GivesUp(steps, step))
    future, declined = fn.submit(0), declines.submit(0)
    with pytest.raises(JobTimeoutError):
        future.result(timeout=timeout)
    assert future.job.requeues == 1
    assert [s for s, _ in future.job.history].count(JobState.REQUEUED) == 1
    with pytest.raises(JobTimeoutError):
        declined.result(timeout=timeout)
    assert declined.job.requeues == 0
