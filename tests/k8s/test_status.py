"""Job and pod objects, as the real test cluster's API server returned them, to the core's JobStatus.

The samples are recorded by samples/collect.py (plain Jobs made with the official client,
each waited for until it shows its case). The backend reaches the same states on the real
cluster in tests/real_world/test_kubernetes_job_submission_real.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from clustrix.state import JobState
from clustrix_k8s import status

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> tuple[dict, list[dict]]:
    data = json.loads((SAMPLES / f"{name}.json").read_text())
    return data["job"], data["pods"]


def test_complete():
    job, pods = sample("complete")
    got = status.job_status(job, pods)
    assert (got.state, got.exit_code, got.nodes) == (JobState.COMPLETED, 0, pods[0]["spec"]["nodeName"])


def test_exit_code_of_a_failed_pod():
    got = status.job_status(*sample("exit3"))
    assert (got.state, got.exit_code) == (JobState.FAILED, 3)
    assert got.reason == "BackoffLimitExceeded: Job has reached the specified backoff limit: Error"


def test_oom_killed_is_out_of_memory_with_the_limit():
    got = status.job_status(*sample("oom"))
    assert (got.state, got.exit_code) == (JobState.OUT_OF_MEMORY, 137)
    assert got.reason == f"OOMKilled: the container went over its memory limit (limit {100 * 1024**2} bytes)"


def test_deadline_exceeded_is_timeout():
    got = status.job_status(*sample("deadline"))
    assert got.state is JobState.TIMEOUT
    assert got.reason == "DeadlineExceeded: Job was active longer than specified deadline"


def test_running():
    job, pods = sample("running")
    assert status.job_status(job, pods).state is JobState.RUNNING
    assert status.job_status(job, []).state is JobState.PENDING


def test_a_pod_that_ended_stays_running_until_the_job_controller_counts_it():
    job, _ = sample("running")
    _, pods = sample("exit3")
    assert status.job_status(job, pods).state is JobState.RUNNING


@pytest.mark.parametrize(
    ("waited", "state"), [(0.0, JobState.PENDING), (29.9, JobState.PENDING), (30.0, JobState.FAILED)]
)
def test_an_image_that_is_never_pulled_fails_after_the_grace(waited, state):
    job, pods = sample("never-pull")
    asked = []

    def since(what: str) -> float:
        asked.append(what)
        return waited

    got = status.job_status(job, pods, since=since, container_error_grace=30)
    assert got.state is state
    assert 'ErrImageNeverPull: Container image "clustrix.test/no-such-image:1" is not present' in got.reason
    assert asked == [f"{pods[0]['metadata']['name']}/ErrImageNeverPull"]


@pytest.mark.parametrize(
    ("timeout", "waited", "state"),
    [(0.0, 10_000.0, JobState.PENDING), (60.0, 59.0, JobState.PENDING), (60.0, 60.0, JobState.FAILED)],
)
def test_unschedulable_waits_with_the_schedulers_message_unless_timed_out(timeout, waited, state):
    got = status.job_status(*sample("unschedulable"), since=lambda _: waited, unschedulable_timeout=timeout)
    assert got.state is state
    assert "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu." in got.reason


def test_a_deleted_job_is_cancelled():
    _, pods = sample("running")
    assert status.job_status(None, pods, cancelled=True).reason == "cancelled: the Job was deleted"
    assert status.job_status(None, []).reason == "the Job was deleted outside clustrix"
    assert status.job_status(None, []).state is JobState.CANCELLED


def test_with_retries_an_earlier_oom_explains_the_failure():
    job, oom_pods = sample("oom")
    _, exit_pods = sample("exit3")
    later = copy.deepcopy(exit_pods[0])
    later["metadata"]["creationTimestamp"] = "2999-01-01T00:00:00Z"
    assert status.job_status(job, [oom_pods[0], later]).state is JobState.OUT_OF_MEMORY


def test_allocation_from_the_pod_spec():
    assert status.allocated(sample("oom")[1][0]) == (1, 100 * 1024**2)
    assert status.allocated(sample("complete")[1][0]) == (1, None)
    pod = {"spec": {"containers": [{"name": "job", "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}}}]}}
    assert status.allocated(pod) == (2, 1024**3)


def test_a_cancelled_job_whose_pod_ended_on_the_term_is_cancelled_not_failed():
    job, pods = sample("exit3")
    assert status.job_status(job, pods, cancelled=True).state is JobState.CANCELLED
    assert status.job_status(*sample("complete"), cancelled=True).state is JobState.COMPLETED
    assert status.job_status(*sample("running"), cancelled=True).state is JobState.RUNNING
