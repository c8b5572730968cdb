"""ClusterJobValidator: checks what really happened to a job, on any backend.

The generic half lives here: the job's state history, its value or error, files it
wrote, and metrics from the runner's own record. The scheduler's half (is the job in
its queue, what did it allocate, what does its accounting say) comes from the job's
backend: ``Backend.job_in_queue``, ``job_allocation`` and ``job_metrics``. Results
serialise to JSON for reports.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from clustrix.errors import (
    BackendUnavailableError,
    JobCancelledError,
    JobEnvironmentError,
    JobExitError,
    JobLostError,
    JobOutOfMemoryError,
    JobPreemptedError,
    JobTimeoutError,
    NodeFailureError,
    RemoteError,
    ResultError,
    SerializationError,
    SubmissionError,
)
from clustrix.job import ClusterFuture, Job
from clustrix.records import JobMetrics, iso
from clustrix.state import JobState

_UNSET: Any = object()

# Where a job's failure came from, for reports; the first matching class wins.
ERROR_CATEGORIES: tuple[tuple[type[BaseException], str], ...] = (
    (JobTimeoutError, "time_limit"),
    (JobOutOfMemoryError, "memory"),
    (JobPreemptedError, "preempted"),
    (JobCancelledError, "cancelled"),
    (concurrent.futures.CancelledError, "cancelled"),
    (NodeFailureError, "node_failure"),
    (JobEnvironmentError, "environment"),
    (SerializationError, "serialization"),
    (SubmissionError, "scheduler"),
    (BackendUnavailableError, "scheduler"),
    (ResultError, "result"),
    (JobLostError, "result"),
    (JobExitError, "user_exception"),
    (RemoteError, "user_exception"),
)


def categorize(error: BaseException | None) -> str | None:
    if error is None:
        return None
    for cls, category in ERROR_CATEGORIES:
        if isinstance(error, cls):
            return category
    return "user_exception"


@attrs.frozen
class Check:
    name: str
    passed: bool
    expected: Any = None
    actual: Any = None
    message: str = ""


@attrs.frozen
class ValidationResult:
    """Every check made on one job, with its metrics and the category of its error, if any."""

    name: str
    job_id: str
    backend: str
    checks: tuple[Check, ...]
    metrics: JobMetrics | None
    error_category: str | None
    history: tuple[tuple[str, str], ...] = ()
    # How often the job's call checkpointed and was submitted again, and how often it failed and
    # was retried (each is REQUEUED in ``history``).
    requeues: int = 0
    retries: int = 0

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "job_id": self.job_id,
            "backend": self.backend,
            "passed": self.passed,
            "error_category": self.error_category,
            "history": [list(step) for step in self.history],
            "requeues": self.requeues,
            "retries": self.retries,
            "metrics": self.metrics.to_dict() if self.metrics else None,
            "checks": [
                {**attrs.asdict(c), "expected": repr(c.expected), "actual": repr(c.actual)} for c in self.checks
            ],
        }

    def summary(self) -> str:
        lines = [f"{self.name}: job {self.job_id} on {self.backend}: {'PASSED' if self.passed else 'FAILED'}"]
        lines += [f"  {'ok  ' if c.passed else 'FAIL'} {c.name}: {c.message}" for c in self.checks]
        return "\n".join(lines)


def metrics_for(job: Job) -> JobMetrics:
    """The scheduler's metrics when its plugin has them, else the runner's own record."""
    scheduler = job.session.backend.job_metrics(job.job_id, job.meta)
    if scheduler is not None:
        return scheduler
    meta = job.meta or {}
    limits = meta.get("limits", {})
    cores = meta.get("env", {}).get("CLUSTRIX_CORES")
    return JobMetrics(
        job_id=job.job_id,
        backend=job.session.config.backend,
        state=job.state.value,
        submitted_at=job.submitted_at,
        started_at=datetime.datetime.fromisoformat(meta["start"]) if "start" in meta else None,
        ended_at=datetime.datetime.fromisoformat(meta["end"]) if "end" in meta else None,
        exit_code=job.status.exit_code,
        nodes=(meta["host"],) if "host" in meta else (),
        allocated_cores=int(cores) if cores and cores.isdigit() else limits.get("cpus"),
        allocated_memory=limits.get("address_space"),
        peak_memory=limits.get("peak_rss"),
    )


# A job's states may only move forward through these ranks, to one end.
_RANK = {JobState.PENDING: 0, JobState.RUNNING: 1}


class ClusterJobValidator:
    """Validates futures of submitted jobs and keeps every result for a report.

    ``validate(future, expected_value=..., ...)`` waits for the job (cancelling it at
    ``timeout``), then checks: the scheduler accepted it, its state history moved
    forward to the expected end, what was allocated covers what was asked, its value or
    error and the files it wrote, and collects its metrics.
    """

    def __init__(self, timeout: float = 600.0) -> None:
        self.timeout = timeout
        self.results: list[ValidationResult] = []

    def submitted(self, future: ClusterFuture) -> Check:
        """Call right after submission: the scheduler lists the job (or already has its record)."""
        job = future.job
        seen = job.session.backend.job_in_queue(job.job_id)
        return Check(
            "submission",
            passed=bool(seen) or job.state.finished,
            expected="listed by the scheduler",
            actual=f"in queue: {seen}, state {job.state.value}",
            message=f"job {job.job_id} {'entered' if seen else 'was not found in'} the scheduler's queue",
        )

    def validate(
        self,
        future: ClusterFuture,
        *,
        name: str | None = None,
        expected_value: Any = _UNSET,
        value_check: Callable[[Any], bool] | None = None,
        expected_error: type[BaseException] | None = None,
        expected_state: JobState | None = None,
        expected_files: Sequence[str] = (),
        check_resources: bool = True,
        timeout: float | None = None,
    ) -> ValidationResult:
        job = future.job
        checks = [self.submitted(future)]
        value, error = _UNSET, None
        # Wait apart from result(): a JobTimeoutError is a TimeoutError too, and is a job's answer.
        if not concurrent.futures.wait([future], timeout=timeout or self.timeout).done:
            future.cancel()
            checks.append(Check("finished in time", False, timeout or self.timeout, None, "cancelled the job"))
        try:
            value = future.result()
        except BaseException as exc:  # noqa: BLE001 - the job's error is what is being validated
            error = exc
        if expected_state is None:
            expected_state = JobState.COMPLETED if expected_error is None else None
        checks.append(self._history(job, expected_state))
        checks += self._outcome(value, error, expected_value, value_check, expected_error)
        if expected_files:
            checks += self._files(job, expected_files)
        if check_resources and error is None:
            checks += self._resources(job)
        metrics = metrics_for(job) if job.state.finished else None
        checks.append(
            Check("metrics", metrics is not None, "collected", metrics.source if metrics else None, "metrics collected")
        )
        result = ValidationResult(
            name=name or job.spec.name,
            job_id=job.job_id,
            backend=job.session.config.backend,
            checks=tuple(checks),
            metrics=metrics,
            error_category=categorize(error),
            history=tuple((state.value, iso(when) or "") for state, when in job.history),
            requeues=job.requeues,
            retries=job.retries,
        )
        self.results.append(result)
        return result

    def _history(self, job: Job, expected_end: JobState | None) -> Check:
        states = [state for state, _ in job.history]
        times = [when for _, when in job.history]
        # Each run of the job (a requeue starts another) moves forward on its own.
        runs: list[list[JobState]] = [[]]
        for state in states:
            if state is JobState.REQUEUED:
                runs.append([])
            else:
                runs[-1].append(state)
        forward = all(
            not a.finished and _RANK.get(a, 2) <= _RANK.get(b, 2) for run in runs for a, b in itertools.pairwise(run)
        )
        ordered = times == sorted(times)
        end_ok = expected_end is None or states[-1] is expected_end
        return Check(
            "state transitions",
            states[0] is JobState.PENDING and forward and ordered and end_ok,
            f"PENDING -> ... -> {expected_end.value if expected_end else 'an end'}",
            " -> ".join(s.value for s in states),
            "states moved forward with ordered timestamps" if forward and ordered else "states out of order",
        )

    def _outcome(
        self,
        value: Any,
        error: BaseException | None,
        expected_value: Any,
        value_check: Callable[[Any], bool] | None,
        expected_error: type[BaseException] | None,
    ) -> list[Check]:
        if expected_error is not None:
            passed = isinstance(error, expected_error)
            return [
                Check(
                    "error",
                    passed,
                    expected_error.__name__,
                    type(error).__name__ if error else None,
                    f"category {categorize(error)}",
                )
            ]
        if error is not None:
            return [Check("value", False, expected_value, None, f"{type(error).__name__}: {error}")]
        checks = []
        if expected_value is not _UNSET:
            checks.append(Check("value", value == expected_value, expected_value, value, "value returned"))
        if value_check is not None:
            checks.append(Check("value predicate", bool(value_check(value)), "predicate true", value, "predicate"))
        return checks

    def _files(self, job: Job, paths: Sequence[str]) -> list[Check]:
        checks = []
        for path in paths:
            try:
                size = len(job.session.transport.read_file(path))
                checks.append(Check(f"file {path}", True, "exists", f"{size} bytes", "written by the job"))
            except FileNotFoundError:
                checks.append(Check(f"file {path}", False, "exists", "missing", "the job did not write it"))
        return checks

    def _resources(self, job: Job) -> list[Check]:
        allocation = job.session.backend.job_allocation(job.job_id, job.meta)
        if allocation is None:
            return [Check("allocation", False, "reported", None, "the backend reported no allocation for this job")]
        asked = job.spec.resources
        pairs = [
            ("cores", asked.cores, allocation.cores),
            ("memory", asked.memory, allocation.memory),
            ("time limit", asked.time, allocation.time_limit),
        ]
        checks = [
            Check(
                f"allocated {what}",
                granted is not None and granted >= wanted,
                wanted,
                granted,
                f"asked {wanted}, granted {granted}",
            )
            for what, wanted, granted in pairs
            if wanted is not None
        ]
        if asked.queue is not None:
            checks.append(
                Check("queue", allocation.queue == asked.queue, asked.queue, allocation.queue, "queue/partition")
            )
        return checks

    def write_report(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "passed": all(r.passed for r in self.results),
            "jobs": [r.to_dict() for r in self.results],
        }
        path.write_text(json.dumps(report, indent=2))
        return path
