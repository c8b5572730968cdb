"""Entry point module (group ``clustrix``): the ``pbs`` backend and its half of the validator."""

from __future__ import annotations

from collections.abc import Mapping

from clustrix.backend import Backend
from clustrix.hookspecs import hookimpl
from clustrix.job import Job
from clustrix.records import Allocation, JobMetrics
from clustrix_pbs.backend import PbsBackend


@hookimpl
def clustrix_backends() -> Mapping[str, type[Backend]]:
    return {"pbs": PbsBackend}


def _pbs(job: Job) -> PbsBackend | None:
    backend = job.session.backend
    return backend if isinstance(backend, PbsBackend) else None


@hookimpl
def clustrix_job_in_queue(job: Job) -> bool | None:
    backend = _pbs(job)
    return None if backend is None else backend.record(backend.scheduler_job(job.job_id)) is not None


@hookimpl
def clustrix_job_allocation(job: Job) -> Allocation | None:
    backend = _pbs(job)
    return None if backend is None else backend.allocation(backend.scheduler_job(job.job_id))


@hookimpl
def clustrix_job_metrics(job: Job) -> JobMetrics | None:
    backend = _pbs(job)
    return None if backend is None else backend.metrics(backend.scheduler_job(job.job_id), job.session.config.backend)
