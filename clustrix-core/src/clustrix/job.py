"""A submitted job and the future that carries its result."""

from __future__ import annotations

import concurrent.futures
import datetime
from collections.abc import Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from clustrix.spec import JobSpec
from clustrix.state import JobState, JobStatus

if TYPE_CHECKING:
    from clustrix.backend import Backend
    from clustrix.config import ClusterConfig
    from clustrix.transport import Transport


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class JobOwner(Protocol):
    """The session that submitted a job (clustrix.session.ClusterSession), as its job, its future
    and the validator use it: the job does not know the session, only this."""

    config: ClusterConfig
    backend: Backend
    transport: Transport

    def read_output(self, job: Job, name: str) -> str:
        """The job's ``stdout`` or ``stderr``, so far."""

    def cancel(self, jobs: Sequence[Job]) -> None:
        """Cancel the jobs with one scheduler call."""


@attrs.define(eq=False)
class Job:
    """One call on one cluster: its ids, where its files are, and what the scheduler said of it."""

    key: str
    job_id: str
    directory: str
    spec: JobSpec = attrs.field(repr=False)
    session: JobOwner = attrs.field(repr=False)
    hmac_key: bytes = attrs.field(repr=False)
    status: JobStatus = attrs.field(factory=lambda: JobStatus(JobState.PENDING))
    submitted_at: datetime.datetime = attrs.field(factory=_now)
    # Every state seen, with when it was first seen; starts with PENDING at submission.
    history: list[tuple[JobState, datetime.datetime]] = attrs.field(factory=list)
    # Each rank's meta.json from the runner, in rank order, once the job has ended (None where
    # one could not be read); a call of one task has one.
    metas: list[dict[str, Any] | None] = attrs.field(factory=list, repr=False)
    # Captured when the job ends, so output outlives the job directory's cleanup.
    stdout_text: str | None = attrs.field(default=None, repr=False)
    stderr_text: str | None = attrs.field(default=None, repr=False)
    # Dependencies: the unfinished jobs this one waited for, those whose result files its runner
    # reads, and how many unfinished jobs read this one's result file.
    waits_for: tuple[Job, ...] = attrs.field(default=(), repr=False)
    reads_from: tuple[Job, ...] = attrs.field(default=(), repr=False)
    dependants: int = 0
    clean_when_released: bool = False
    # The user asked to cancel it: ending CANCELLED then cancels its future instead of failing it.
    cancel_requested: bool = False
    # How often its call checkpointed and was submitted again (``job_id`` is the latest job's).
    requeues: int = 0
    # How often its call failed and was run again (``retries=``; ``job_id`` is the latest run's).
    retries: int = 0

    def __attrs_post_init__(self) -> None:
        self.history.append((self.status.state, self.submitted_at))

    @property
    def state(self) -> JobState:
        return self.status.state

    @property
    def meta(self) -> dict[str, Any] | None:
        """The runner's record of the call (rank 0's): host, pid, user, times, scheduler variables."""
        return self.metas[0] if self.metas else None

    @property
    def ended_by_upstream(self) -> bool:
        """Ended CANCELLED unasked while a job it waits for has not been seen ending yet: the
        scheduler removed it because that job failed (PBS Pro deletes an ``afterok`` dependant
        as soon as its upstream exits, before a poll sees the upstream's end)."""
        return (
            self.state is JobState.CANCELLED
            and not self.cancel_requested
            and any(not up.state.finished for up in self.waits_for)
        )

    def update(self, status: JobStatus) -> JobState | None:
        """Record a poll's answer; return the old state when the state changed."""
        old = self.status.state
        self.status = status
        if status.state is old:
            return None
        self.history.append((status.state, _now()))
        return old


class ClusterFuture(concurrent.futures.Future):
    """A ``concurrent.futures.Future`` for a job: ``result()``, a ``cancel()`` that ends the job, awaitable."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job
        # The futures submitted together with this one (one ``map``): Ctrl-C cancels them all.
        self.batch: list[ClusterFuture] = [self]

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def state(self) -> JobState:
        return self.job.state

    def result(self, timeout: float | None = None) -> Any:
        """The call's value, or its exception; Ctrl-C while waiting cancels this future's whole batch
        on the cluster (with the profile's ``cancel_on_interrupt``, the default), then raises."""
        try:
            return super().result(timeout)
        except KeyboardInterrupt:
            if self.job.session.config.cancel_on_interrupt:
                cancel(self.batch)
            raise

    def cancel(self) -> bool:
        """Cancel the job on the cluster; False when it has already ended."""
        return cancel([self]) == 1

    def mark_cancelled(self) -> bool:
        """Cancel the future only, once its job has been cancelled on the cluster."""
        if self.cancelled():
            return True  # the job's end, seen first, already did
        if not super().cancel():
            return False
        # Without this, concurrent.futures.wait() and as_completed() never count it as done.
        self.set_running_or_notify_cancel()
        return True

    def stdout(self) -> str:
        return self.job.session.read_output(self.job, "stdout")

    def stderr(self) -> str:
        return self.job.session.read_output(self.job, "stderr")

    def __await__(self) -> Generator[Any, None, Any]:
        # Imported here: only code that awaits needs asyncio, and it has asyncio loaded already.
        import asyncio

        return asyncio.wrap_future(self).__await__()

    def __repr__(self) -> str:
        return f"<ClusterFuture job {self.job_id} {self.state.value}>"


def cancel(futures: Iterable[ClusterFuture]) -> int:
    """Cancel many jobs with one scheduler call per cluster (a whole ``map`` at once).

    Returns how many were cancelled; those already ended are left as they are.
    """
    pending = [future for future in futures if not future.done()]
    by_session: dict[int, list[ClusterFuture]] = {}
    for future in pending:
        by_session.setdefault(id(future.job.session), []).append(future)
    for group in by_session.values():
        group[0].job.session.cancel([future.job for future in group])
    return sum(future.mark_cancelled() for future in pending)
