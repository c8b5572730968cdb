"""One monitor per cluster: polls ALL of its unfinished jobs with one backend call per interval.

The interval starts short and grows by half each quiet poll that asked the scheduler, up to the
profile's maximum; a state change or a new submission brings it back down. No thread per job.

Jobs that ended are collected (files read, results authenticated and unpickled, directories
cleaned) by a small pool of collector threads, in groups that each cost one read and one removal
on the transport (a round trip each over SSH, whatever the group's size), so one huge result or
a slow file system does not hold up the polls of every other job.

The thread must outlive anything that goes wrong, or every waiting ``result()`` hangs:
a poll that raises is a failed poll (retried until ``poll_failure_timeout``), and a job
whose end cannot be handled gets that error as its future's exception, while the
others are still watched.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from clustrix.errors import BackendUnavailableError, ClustrixError, JobLostError
from clustrix.log import get_logger

if TYPE_CHECKING:
    from clustrix.backend import Backend
    from clustrix.config import ClusterConfig
    from clustrix.job import Job
    from clustrix.state import JobStatus

BACKOFF = 1.5
# How long a job the scheduler removed because a job it waits for failed waits for a poll to
# see that job's end (the failed upstream explains it), before it is collected as it stands.
UPSTREAM_END_GRACE = 60.0
# Groups of ended jobs collected at once; each mostly waits on the transport.
COLLECTORS = 4
MAX_GROUP = 64


class Watched(Protocol):
    """The session whose jobs a monitor polls (clustrix.session.ClusterSession): what the monitor
    asks of it, and what it tells it. The monitor does not know the session, only this."""

    config: ClusterConfig
    backend: Backend

    def record(self, job: Job, status: JobStatus) -> bool:
        """Store a poll's answer for ``job``; whether its state changed."""

    def finish(self, jobs: Sequence[Job]) -> list[tuple[Job, BaseException]]:
        """These jobs ended: read their files, clean up, resolve their futures; those whose handling
        failed, with why."""

    def abandon(self, job: Job, error: ClustrixError) -> None:
        """Stop waiting for ``job``: its future gets ``error``."""


class Monitor:
    def __init__(self, session: Watched) -> None:
        self.session = session
        self.config = session.config
        self.polls = 0
        # Keyed by job key: calls chunked into one scheduler task share its job id.
        self._jobs: dict[str, Job] = {}
        # Ended jobs held back until their upstreams' ends are seen: key -> (job, collect by).
        self._deferred: dict[str, tuple[Job, float]] = {}
        self._wake = threading.Condition()
        self._woken = False
        # Since when polls have failed (None: the last one answered).
        self._failing_since: float | None = None
        self._thread: threading.Thread | None = None
        self._collectors = concurrent.futures.ThreadPoolExecutor(
            COLLECTORS, thread_name_prefix=f"clustrix-collect[{self.config.label}]"
        )
        self._log = get_logger(cluster=session.config.label)

    def watch(self, jobs: list[Job]) -> None:
        with self._wake:
            self._jobs.update((job.key, job) for job in jobs)
            self._woken = True
            self._wake.notify()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"clustrix-monitor[{self.config.label}]")
                self._thread.daemon = True
                self._thread.start()

    def nudge(self) -> None:
        """Poll now: the backend knows something changed."""
        with self._wake:
            self._woken = True
            self._wake.notify()

    def _run(self) -> None:
        interval = self.config.poll_interval
        while True:
            with self._wake:
                while not self._jobs and not self._deferred:
                    self._wake.wait()
                self._woken = False
            # Backing off spares the scheduler: a poll that does not ask it (query_would_wait) keeps the interval.
            asks = not self.session.backend.query_would_wait()
            if self._poll_once():
                interval = self.config.poll_interval
            elif asks:
                interval = min(interval * BACKOFF, self.config.poll_interval_max)
            with self._wake:
                if not self._woken:
                    self._wake.wait(timeout=interval)
                if self._woken:
                    interval = self.config.poll_interval

    def _poll_once(self) -> bool:
        """Poll every watched job once; True when a state changed. A frame of its own: the jobs
        polled are not kept alive (with their functions and arguments) while the monitor waits."""
        with self._wake:
            jobs = list(self._jobs.values())
        statuses = self._poll(jobs) if jobs else {}
        changed = False
        ended = []
        for job in jobs:
            status = statuses.get(job.job_id)
            if status is not None:
                changed |= self._record(job, status)
                if status.state.finished:
                    ended.append(job)
        # Collected only once the whole poll is recorded: a call that ended because a job it waits
        # for failed is explained by that job's state, which may come later in the same poll, or
        # in a later one (held back until then; see Job.ended_by_upstream).
        now = time.monotonic()
        with self._wake:
            for job in ended:
                if self._jobs.pop(job.key, None) is not None:
                    self._deferred[job.key] = (job, now + UPSTREAM_END_GRACE)
            ready = [job for job, until in self._deferred.values() if not job.ended_by_upstream or now >= until]
            for job in ready:
                del self._deferred[job.key]
        # A collector reads and cleans its group with one transport command each: few groups, but
        # no more in one than MAX_GROUP, so one huge result holds up only its group.
        size = min(MAX_GROUP, -(-len(ready) // COLLECTORS))
        for start in range(0, len(ready), size or 1):
            self._collectors.submit(self._collect, ready[start : start + size])
        return changed

    def _poll(self, jobs: list[Job]) -> dict[str, JobStatus]:
        """One backend poll of ``jobs``; nothing when it fails (given up on after ``poll_failure_timeout``)."""
        try:
            statuses = self.session.backend.poll(list(dict.fromkeys(job.job_id for job in jobs)))
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            self._failing_since = self._failing_since or time.monotonic()
            self._log.warning("poll failed", error=f"{type(exc).__name__}: {exc}", jobs=len(jobs))
            if time.monotonic() - self._failing_since > self.config.poll_failure_timeout:
                self._give_up(jobs, exc)
                self._failing_since = None
            return {}
        self.polls += 1
        self._failing_since = None
        return statuses

    def _record(self, job: Job, status: JobStatus) -> bool:
        """Record one job's status; True when its state changed."""
        try:
            return self.session.record(job, status)
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            self._lost(job, exc)
            return True

    def _collect(self, jobs: list[Job]) -> None:
        try:
            failed = self.session.finish(jobs)
        except BaseException as exc:  # noqa: BLE001 - a future must resolve, whatever a collector met
            failed = [(job, exc) for job in jobs]
        for job, exc in failed:
            self._lost(job, exc)

    def _lost(self, job: Job, exc: BaseException) -> None:
        """Fail ``job``'s future with what went wrong handling it; the others are not concerned."""
        self._log.error("job handling failed", job_id=job.job_id, error=f"{type(exc).__name__}: {exc}")
        with self._wake:
            self._jobs.pop(job.key, None)
            self._deferred.pop(job.key, None)
        if isinstance(exc, ClustrixError):
            error: ClustrixError = exc
        else:
            error = JobLostError(
                f"job {job.job_id} ended, but collecting it failed: {type(exc).__name__}: {exc}; "
                f"its files are left in {job.directory}"
            )
            error.__cause__ = exc
        self.session.abandon(job, error)

    def _give_up(self, jobs: list[Job], exc: Exception) -> None:
        error = BackendUnavailableError(
            f"{self.config.label}: no answer from the scheduler for {self.config.poll_failure_timeout:g} s "
            f"(poll_failure_timeout); the jobs may still run there: {type(exc).__name__}: {exc}"
        )
        for job in jobs:
            with self._wake:
                self._jobs.pop(job.key, None)
            self.session.abandon(job, error)
