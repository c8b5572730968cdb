"""A third-party backend: runs each job to its end with ``sh`` at submit time, one after another.

It knows nothing of clustrix's internals beyond the public plugin API (``Backend``,
``hookimpl``), which is the point: the core finds it through its entry point alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from clustrix import JobState, JobStatus, SubmissionError, hookimpl
from clustrix.backend import Backend, StagedJob
from clustrix.records import Allocation

_ids = itertools.count(1)


class SerialShellBackend(Backend):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._done: dict[str, JobStatus] = {}

    def submit(self, jobs: Sequence[StagedJob], chunksize: int = 1) -> list[str]:
        if any(job.after for job in jobs):
            raise SubmissionError("the example backend runs each job at once and cannot wait for others")
        self.write_runner([job.directory for job in jobs])
        ids = []
        for job in jobs:
            job_id = f"example-{next(_ids)}"
            cores = job.spec.resources.cores
            script = "\n".join(
                [
                    f"export CLUSTRIX_JOB_ID={job_id}",
                    f"export CLUSTRIX_CORES={cores}",
                    *self.setup_lines(job.spec),
                    self.runner_line([job]),
                ]
            )
            result = self.transport.run(["sh", "-c", script])
            state = JobState.COMPLETED if result.ok else JobState.FAILED
            self._done[job_id] = JobStatus(state, exit_code=result.returncode)
            ids.append(job_id)
        return ids

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        return {job_id: self._done.get(job_id, JobStatus(JobState.UNKNOWN)) for job_id in job_ids}

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Every job has ended by the time submit returns: nothing to cancel."""

    def job_in_queue(self, job_id: str) -> bool | None:
        return job_id in self._done

    def job_allocation(self, job_id: str, meta: Mapping[str, Any] | None) -> Allocation | None:
        """No limits are enforced: the job had the whole machine, as the runner saw it."""
        if meta is None:
            return None
        return Allocation(cores=meta["limits"]["cpus"], nodes=(meta["host"],))

    def check(self) -> str:
        return "runs jobs with sh at submit time"


@hookimpl
def clustrix_backends() -> Mapping[str, type[Backend]]:
    return {"example": SerialShellBackend}
