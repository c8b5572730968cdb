"""A third-party backend: runs each job to its end with ``sh`` at submit time, one after another.

It knows nothing of clustrix's internals beyond the public plugin API (``Backend``,
``hookimpl``), which is the point: the core finds it through its entry point alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from clustrix import JobState, JobStatus, hookimpl
from clustrix.backend import Backend, StagedJob

_ids = itertools.count(1)


class SerialShellBackend(Backend):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._done: dict[str, JobStatus] = {}

    def submit(self, jobs: Sequence[StagedJob]) -> list[str]:
        ids = []
        for job in jobs:
            job_id = f"example-{next(_ids)}"
            script = "\n".join([f"export CLUSTRIX_JOB_ID={job_id}", *self.run_lines([job])])
            result = self.transport.run(["sh", "-c", script])
            state = JobState.COMPLETED if result.ok else JobState.FAILED
            self._done[job_id] = JobStatus(state, exit_code=result.returncode)
            ids.append(job_id)
        return ids

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        return {job_id: self._done.get(job_id, JobStatus(JobState.UNKNOWN)) for job_id in job_ids}

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Every job has ended by the time submit returns: nothing to cancel."""

    def check(self) -> str:
        return "runs jobs with sh at submit time"


@hookimpl
def clustrix_backends() -> Mapping[str, type[Backend]]:
    return {"example": SerialShellBackend}
