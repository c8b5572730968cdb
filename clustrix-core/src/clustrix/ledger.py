"""What a batch backend knows of the jobs it submitted or follows: the one place a scheduler
plugin reads it from, so that none keeps bookkeeping of its own.

Per job id, while the job is unfinished: its job directories (a chunk's calls share one task;
a worker task has a directory of its own), whether it is a worker task, and whether the last
poll saw it RUNNING. Kept past the end, for the validator and late answers (the oldest go
first): what each job or array asked for, and which jobs this client cancelled.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from clustrix.resources import Resources
from clustrix.state import JobState, JobStatus

# Ended jobs' resources and cancels remembered (the oldest go first).
ENDED_KEPT = 100_000


class Ledger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._directories: dict[str, list[str]] = {}
        self._workers: set[str] = set()
        self._running: set[str] = set()
        self._resources: dict[str, Resources] = {}
        self._cancelled: dict[str, None] = {}

    def submitted(self, base_id: str, resources: Resources) -> None:
        """A job or array ``base_id`` was submitted asking for ``resources``."""
        with self._lock:
            self._resources[base_id] = resources
            _trim(self._resources)

    def runs(self, job_id: str, directory: str) -> None:
        """``job_id`` runs the call staged in ``directory`` (after those it was given before)."""
        with self._lock:
            self._directories.setdefault(job_id, []).append(directory)

    def worker(self, task: str, directory: str) -> None:
        """``task`` is a worker task whose own directory is ``directory`` (kept if already known)."""
        with self._lock:
            self._directories.setdefault(task, [directory])
            self._workers.add(task)

    def cancelled(self, job_ids: Iterable[str]) -> None:
        with self._lock:
            self._cancelled.update(dict.fromkeys(job_ids))
            _trim(self._cancelled)

    def seen(self, statuses: Mapping[str, JobStatus]) -> None:
        """A poll's answers: who runs now, and the unfinished-only facts of those that ended go."""
        with self._lock:
            for job_id, status in statuses.items():
                if status.state is JobState.RUNNING:
                    self._running.add(job_id)
                elif status.state.finished:
                    self._forget(job_id)

    def forget(self, job_ids: Iterable[str]) -> None:
        """Drop what is kept for unfinished jobs: ``job_ids`` are of no more concern."""
        with self._lock:
            for job_id in job_ids:
                self._forget(job_id)

    def _forget(self, job_id: str) -> None:
        self._directories.pop(job_id, None)
        self._workers.discard(job_id)
        self._running.discard(job_id)

    # -- what a plugin asks -------------------------------------------------------------------

    def resources(self, base_id: str) -> Resources | None:
        with self._lock:
            return self._resources.get(base_id)

    def directories(self, job_id: str) -> list[str] | None:
        """The job directories of the unfinished ``job_id``, in order; None when they are not known."""
        with self._lock:
            found = self._directories.get(job_id)
            return list(found) if found is not None else None

    def known(self) -> list[str]:
        """The unfinished jobs whose directories are known."""
        with self._lock:
            return list(self._directories)

    def is_worker(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._workers

    def was_cancelled(self, *job_ids: str) -> bool:
        """Whether this client cancelled any of ``job_ids`` (a task, its array)."""
        with self._lock:
            return any(job_id in self._cancelled for job_id in job_ids)

    def seen_running(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._running


def _trim(kept: dict) -> None:
    while len(kept) > ENDED_KEPT:
        del kept[next(iter(kept))]
