"""Jobs a batch scheduler holds until what they wait for has ended: released once all of it
COMPLETED, cancelled as soon as some of it did not.

A job that waits for a call run by workers has no scheduler id to depend on, and a scheduler
without afterok (SGE's -hold_jid starts a job however its upstream ended) cannot be left to
decide: such a job is submitted held (``BatchBackend.hold_option``) and settled here from the
ends each poll sees.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from clustrix.state import JobState, JobStatus

# Ends remembered for held jobs that may still wait for them (the oldest go first).
ENDS_KEPT = 100_000


class HeldJobs:
    """The held jobs of one backend (by base id: a held array is one entry), and why those it
    cancelled were cancelled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waits: dict[str, set[str]] = {}
        self._ends: dict[str, JobState] = {}
        self._cancelled: dict[str, str] = {}

    def hold(self, job_id: str, waits: set[str]) -> None:
        """``job_id`` was submitted held; it may start once every job of ``waits`` COMPLETED."""
        with self._lock:
            self._waits[job_id] = waits

    def why_cancelled(self, job_id: str) -> str | None:
        """Why ``settle`` cancelled the held job ``job_id``, if it did."""
        with self._lock:
            return self._cancelled.get(job_id)

    def settle(
        self,
        statuses: Mapping[str, JobStatus],
        release: Callable[[Sequence[str]], bool],
        cancel: Callable[[Sequence[str]], bool],
    ) -> dict[str, str]:
        """Release the held jobs whose upstream all COMPLETED and cancel those with one that did
        not; the jobs cancelled now, with why.

        ``release`` and ``cancel`` answer False when the scheduler did not take the command: a
        held job goes only once its command went through, else it is tried again next poll.
        """
        with self._lock:
            # Every end, not only those waited for now: a job may be submitted to wait for one
            # whose end this poll saw before the session did.
            self._ends.update((job_id, status.state) for job_id, status in statuses.items() if status.state.finished)
            while len(self._ends) > ENDS_KEPT:
                del self._ends[next(iter(self._ends))]
            ends = {held: {up: self._ends.get(up) for up in waits} for held, waits in self._waits.items()}
        ready = [held for held, states in ends.items() if all(s is JobState.COMPLETED for s in states.values())]
        doomed = {
            held: f"job {up} it depends on ended {state.value}"
            for held, states in ends.items()
            for up, state in sorted(states.items(), reverse=True)
            if state is not None and state is not JobState.COMPLETED
        }
        released = ready if ready and release(ready) else []
        cancelled = doomed if doomed and cancel(list(doomed)) else {}
        with self._lock:
            for held in [*released, *cancelled]:
                self._waits.pop(held, None)
            self._cancelled.update(cancelled)
        return cancelled
