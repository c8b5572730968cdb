"""The one job-state enum, and the status a backend reports for a job."""

from __future__ import annotations

import enum

import attrs


class JobState(enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    # Preempted for another job and not requeued (a requeued job is PENDING again).
    PREEMPTED = "PREEMPTED"
    # The scheduler no longer knows the job; the runner's own record decides what happened.
    UNKNOWN = "UNKNOWN"
    # Its call runs again: it checkpointed and clustrix submitted it again (under a new scheduler
    # id), or it failed and is retried (``retries=``).
    REQUEUED = "REQUEUED"

    @property
    def finished(self) -> bool:
        return self not in _ACTIVE


_ACTIVE = frozenset({JobState.PENDING, JobState.RUNNING, JobState.REQUEUED})


@attrs.frozen
class JobStatus:
    """One poll's answer for one job, in the scheduler's own words where it has them."""

    state: JobState
    reason: str = ""
    exit_code: int | None = None
    nodes: str = ""

    def timed_out_by_the_runner(self, limit: int) -> JobStatus:
        """This ended job as TIMEOUT: its runner killed the call at its own ``limit`` (seconds) and
        exited runner.TIMEOUT_EXIT, an ordinary failure to a scheduler that knows no such limit."""
        reason = f"the runner killed the call at its time limit of {limit} s"
        return JobStatus(JobState.TIMEOUT, reason=reason, exit_code=self.exit_code, nodes=self.nodes)
