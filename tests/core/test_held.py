"""HeldJobs: jobs a batch scheduler holds until what they wait for ended (real holds: the Slurm, SGE
and PBS real-world dependency tests)."""

from __future__ import annotations

from clustrix.held import HeldJobs
from clustrix.state import JobState, JobStatus


def ended(**states: JobState) -> dict[str, JobStatus]:
    return {job_id: JobStatus(state) for job_id, state in states.items()}


def test_a_held_job_is_released_once_all_it_waits_for_completed_and_retried_until_it_is():
    held, released = HeldJobs(), []
    held.hold("7", {"3", "4"})
    accept = False

    def release(job_ids):
        released.append(list(job_ids))
        return accept

    assert held.settle(ended(**{"3": JobState.COMPLETED}), release, lambda ids: True) == {}
    assert released == []
    # An end seen before the session asked (a poll of its own) still counts.
    held.settle(ended(**{"4": JobState.COMPLETED}), release, lambda ids: True)
    assert released == [["7"]]
    accept = True  # the scheduler did not take the first release: tried again next poll
    held.settle({}, release, lambda ids: True)
    held.settle({}, release, lambda ids: True)
    assert released == [["7"], ["7"]]


def test_a_held_job_whose_upstream_failed_is_cancelled_with_why():
    held, cancelled = HeldJobs(), []
    held.hold("8", {"5", "6"})
    doomed = held.settle(ended(**{"5": JobState.FAILED}), lambda ids: True, lambda ids: cancelled.append(ids) or True)
    assert doomed == {"8": "job 5 it depends on ended FAILED"} and cancelled == [["8"]]
    assert held.why_cancelled("8") == "job 5 it depends on ended FAILED"
    assert held.settle(ended(**{"6": JobState.COMPLETED}), lambda ids: True, lambda ids: True) == {}
