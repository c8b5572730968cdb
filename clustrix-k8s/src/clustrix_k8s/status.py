"""From a Job and its pods, as the API server reports them, to the core's JobStatus.

Pure functions over the plain JSON objects the watch delivers (``kubectl get -o json``
shapes), so they are tested on objects recorded from a real cluster. Time matters in
two places, given by ``since(what)`` (seconds since the backend first saw ``what``):
a container stuck on an image or configuration error fails after a grace period, and
an unschedulable pod fails after ``unschedulable_timeout`` when one is set.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from clustrix import runner
from clustrix.state import JobState, JobStatus
from clustrix_k8s.manifest import CONTAINER

# A container that waits for one of these will not start by itself (or only after someone
# fixes the image or the configuration): after a grace period it is an error, not a queue.
STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)

Object = Mapping[str, Any]


def _condition(obj: Object, kind: str) -> Object | None:
    for condition in obj.get("status", {}).get("conditions") or ():
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def ended(job: Object | None) -> bool:
    """Kubernetes itself says the Job has ended (Complete or Failed)."""
    return job is not None and bool(_condition(job, "Complete") or _condition(job, "Failed"))


def timestamp(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _created(obj: Object) -> str:
    return obj.get("metadata", {}).get("creationTimestamp") or ""


def latest_pod(pods: Sequence[Object]) -> Object | None:
    """The pod that matters: the newest (with retries, earlier pods have failed already)."""
    return max(pods, key=lambda p: (_created(p), p["metadata"]["name"]), default=None)


def container_status(pod: Object | None) -> Object | None:
    if pod is None:
        return None
    for status in pod.get("status", {}).get("containerStatuses") or ():
        if status.get("name") == CONTAINER:
            return status
    return None


def terminated(pod: Object | None) -> Object | None:
    """The job container's terminated state: its exit code, reason and times, if it ended."""
    status = container_status(pod)
    if status is None:
        return None
    return status.get("state", {}).get("terminated") or status.get("lastState", {}).get("terminated")


def _node(pod: Object | None) -> str:
    return (pod or {}).get("spec", {}).get("nodeName") or ""


def _words(*parts: str | None) -> str:
    return ": ".join(p for p in parts if p)


def job_status(
    job: Object | None,
    pods: Sequence[Object],
    *,
    cancelled: bool = False,
    since: Callable[[str], float] = lambda _what: 0.0,
    container_error_grace: float = 30.0,
    unschedulable_timeout: float = 0.0,
) -> JobStatus:
    """The state of one call's Job; ``job`` None means the API server no longer has it."""
    pod = latest_pod(pods)
    node = _node(pod)
    if job is None:
        reason = "cancelled: the Job was deleted" if cancelled else "the Job was deleted outside clustrix"
        return JobStatus(JobState.CANCELLED, reason=reason, nodes=node)
    ended = terminated(pod)
    if _condition(job, "Complete"):
        return JobStatus(JobState.COMPLETED, exit_code=ended.get("exitCode", 0) if ended else 0, nodes=node)
    failed = _condition(job, "Failed")
    if failed and cancelled:
        # The pod ended on the TERM of the deletion before the Job went: that is the cancel, not a failure.
        return JobStatus(JobState.CANCELLED, reason="cancelled", exit_code=ended and ended.get("exitCode"), nodes=node)
    if failed:
        return _failure(failed, pods, pod)
    if pod is None:
        return JobStatus(JobState.PENDING, reason="waiting for the Job controller to create the pod")
    phase = pod.get("status", {}).get("phase")
    if phase in ("Running", "Succeeded", "Failed"):
        # A pod that ended is still RUNNING here until the Job controller has counted it (a retry may follow).
        return JobStatus(JobState.RUNNING, nodes=node)
    waiting = (container_status(pod) or {}).get("state", {}).get("waiting") or {}
    reason = waiting.get("reason")
    if reason in STUCK_REASONS:
        words = _words(reason, waiting.get("message"))
        waited = since(f"{pod['metadata']['name']}/{reason}")
        if waited >= container_error_grace:
            return JobStatus(
                JobState.FAILED,
                reason=f"the container could not start for {waited:.0f} s: {words}",
                nodes=node,
            )
        return JobStatus(JobState.PENDING, reason=words, nodes=node)
    scheduled = next(
        (c for c in pod.get("status", {}).get("conditions") or () if c.get("type") == "PodScheduled"), None
    )
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        words = _words("Unschedulable", scheduled.get("message"))
        waited = since(f"{pod['metadata']['name']}/Unschedulable")
        if unschedulable_timeout and waited >= unschedulable_timeout:
            return JobStatus(JobState.FAILED, reason=f"unschedulable for {waited:.0f} s: {words}")
        return JobStatus(JobState.PENDING, reason=words)
    return JobStatus(JobState.PENDING, reason=_words(reason, waiting.get("message")), nodes=node)


def _failure(condition: Object, pods: Sequence[Object], pod: Object | None) -> JobStatus:
    """Why a Job failed: its own condition (deadline) or what its last pod says (memory, exit code)."""
    node = _node(pod)
    reason = condition.get("reason") or ""
    words = _words(reason, condition.get("message"))
    ended = terminated(pod)
    exit_code = ended.get("exitCode") if ended else None
    if reason == "DeadlineExceeded":
        return JobStatus(JobState.TIMEOUT, reason=words, exit_code=exit_code, nodes=node)
    # With retries, any pod killed for memory explains the failure better than the last exit code.
    for candidate in sorted(pods, key=_created, reverse=True):
        state = terminated(candidate) or {}
        pod_status = candidate.get("status", {})
        if state.get("reason") == "OOMKilled":
            return JobStatus(
                JobState.OUT_OF_MEMORY,
                reason=_words("OOMKilled", f"the container went over its memory limit ({_memory_limit(candidate)})"),
                exit_code=state.get("exitCode"),
                nodes=_node(candidate),
            )
        if pod_status.get("reason") == "DeadlineExceeded":
            return JobStatus(
                JobState.TIMEOUT, reason=_words("DeadlineExceeded", pod_status.get("message")), nodes=_node(candidate)
            )
        if pod_status.get("reason") == "Evicted":
            return JobStatus(
                JobState.NODE_FAIL, reason=_words("Evicted", pod_status.get("message")), nodes=_node(candidate)
            )
    detail = _words(ended.get("reason"), ended.get("message")) if ended else ""
    failed = JobStatus(JobState.FAILED, reason=_words(words, detail), exit_code=exit_code, nodes=node)
    limit = time_limit(pod) if pod is not None else None
    return failed.timed_out_by_the_runner(limit) if exit_code == runner.TIMEOUT_EXIT and limit else failed


def _container_spec(pod: Object) -> Object:
    for container in pod.get("spec", {}).get("containers") or ():
        if container.get("name") == CONTAINER:
            return container
    return {}


def _memory_limit(pod: Object) -> str:
    limit = _container_spec(pod).get("resources", {}).get("limits", {}).get("memory")
    return f"limit {limit} bytes" if limit else "no limit set"


def allocated(pod: Object) -> tuple[int | None, int | None]:
    """Cores (rounded up) and memory in bytes that the pod's job container was given (its limits)."""
    limits = _container_spec(pod).get("resources", {}).get("limits", {})
    cores = memory = None
    if "cpu" in limits:
        cores = math.ceil(parse_quantity(limits["cpu"]))
    if "memory" in limits:
        memory = int(parse_quantity(limits["memory"]))
    return cores, memory


def time_limit(pod: Object) -> int | None:
    """The time limit, in seconds, the pod's runner holds its call to (its CLUSTRIX_TIME_LIMIT)."""
    value = next(
        (v.get("value") for v in _container_spec(pod).get("env", []) if v.get("name") == "CLUSTRIX_TIME_LIMIT"), None
    )
    return int(value) if value and value.isdigit() else None


def owned_by(pod: Object, job: Object) -> bool:
    """The Job's controller made the pod: its controlling owner is that Job (by uid)."""
    uid = job.get("metadata", {}).get("uid")
    return any(
        ref.get("uid") == uid and ref.get("kind") == "Job" and ref.get("controller")
        for ref in pod.get("metadata", {}).get("ownerReferences") or ()
    )
