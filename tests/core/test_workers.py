"""The client's reading of a worker batch: listing parser and each call's state (pure functions).

The real claiming, killing and relaunching is proven on the real Slurm and SGE
(tests/real_world); these pin the rules the states follow.
"""

from __future__ import annotations

from clustrix import workers
from clustrix.backend import StagedJob
from clustrix.resources import Resources
from clustrix.spec import JobSpec
from clustrix.state import JobState, JobStatus

LISTING = """@ /w/batch-a
claimed 0.7_1
claimed 1.7_2
claimed 2.7_1
ended 0.COMPLETED.0
ended 1.TIMEOUT._
ended 2.FAILED.-9
ended 3.tmp
cancelled 4
@ /w/batch-b
"""


def batch(calls: int, tasks: list[str]) -> workers.WorkerBatch:
    spec = JobSpec(fn=print, args=(), kwargs={}, resources=Resources(), name="print")
    template = StagedJob(key="k", directory="/w/k", spec=spec)
    return workers.WorkerBatch("/w/batch-a", "7", calls, len(tasks), tasks, template)


def test_listing_names_each_calls_worker_and_end():
    listings = workers.parse_listing(LISTING)
    a = listings["/w/batch-a"]
    assert dict(a.claimed) == {0: "7_1", 1: "7_2", 2: "7_1"}
    assert dict(a.ended) == {0: (JobState.COMPLETED, 0), 1: (JobState.TIMEOUT, None), 2: (JobState.FAILED, -9)}
    assert a.cancelled == {4}
    assert listings["/w/batch-b"] == workers.Listing({}, {}, frozenset())


def test_a_calls_state_is_its_own_record_else_its_workers():
    listing = workers.Listing({0: "7_1", 1: "7_2"}, {0: (JobState.COMPLETED, 0)}, frozenset({2}))
    tasks = {"7_1": JobStatus(JobState.RUNNING), "7_2": JobStatus(JobState.TIMEOUT), "7_3": JobStatus(JobState.PENDING)}
    statuses, drain, relaunch = batch(4, ["7_1", "7_2", "7_3"]).statuses(listing, tasks)
    assert statuses[0].state is JobState.COMPLETED
    assert statuses[1].state is JobState.TIMEOUT and "7_2 ended TIMEOUT during the call" in statuses[1].reason
    assert statuses[2].state is JobState.CANCELLED
    assert statuses[3] == JobStatus(JobState.PENDING, reason="waiting for a worker")
    assert (drain, relaunch) == ([], False)


def test_once_every_call_is_claimed_the_idle_workers_are_cancelled_once():
    listing = workers.Listing({0: "7_1", 1: "7_1"}, {}, frozenset())
    tasks = {"7_1": JobStatus(JobState.RUNNING), "7_2": JobStatus(JobState.PENDING)}
    b = batch(2, ["7_1", "7_2"])
    assert b.statuses(listing, tasks)[1] == ["7_2"]
    assert b.statuses(listing, tasks)[1] == []


def test_a_worker_reported_pending_that_claimed_a_call_since_is_not_cancelled():
    # The scheduler is asked before the files are listed: 7_2 started in between.
    listing = workers.Listing({0: "7_1", 1: "7_2"}, {}, frozenset())
    tasks = {"7_1": JobStatus(JobState.RUNNING), "7_2": JobStatus(JobState.PENDING), "7_3": JobStatus(JobState.PENDING)}
    assert batch(2, ["7_1", "7_2", "7_3"]).statuses(listing, tasks)[1] == ["7_3"]


def test_workers_all_gone_with_calls_left_are_relaunched_only_after_progress():
    b = batch(3, ["7_1"])
    ended = {"7_1": JobStatus(JobState.CANCELLED)}
    statuses, _, relaunch = b.statuses(workers.Listing({0: "7_1"}, {}, frozenset()), ended)
    assert relaunch and statuses[1].state is JobState.PENDING
    b.relaunched(["8_1"], claims=1)
    # The new workers died too without claiming anything: the calls end with their state, no loop.
    ended["8_1"] = JobStatus(JobState.FAILED, reason="python: not found")
    statuses, _, relaunch = b.statuses(workers.Listing({0: "7_1"}, {}, frozenset()), ended)
    assert not relaunch
    assert statuses[1].state is JobState.FAILED
    assert statuses[1].reason == f"{workers.NO_WORKER_RAN}: python: not found"
