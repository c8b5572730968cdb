"""Entry point module (group ``clustrix``): the ``sge`` backend and its half of the validator."""

from __future__ import annotations

from collections.abc import Mapping

from clustrix.backend import Backend
from clustrix.hookspecs import hookimpl
from clustrix.job import Job
from clustrix.records import Allocation, JobMetrics
from clustrix_sge.backend import ACCOUNTING_WAIT, SgeBackend


@hookimpl
def clustrix_backends() -> Mapping[str, type[Backend]]:
    return {"sge": SgeBackend}


def _sge(job: Job) -> SgeBackend | None:
    backend = job.session.backend
    return backend if isinstance(backend, SgeBackend) else None


@hookimpl
def clustrix_job_in_queue(job: Job) -> bool | None:
    backend = _sge(job)
    return None if backend is None else backend.known(backend.scheduler_job(job.job_id))


@hookimpl
def clustrix_job_allocation(job: Job) -> Allocation | None:
    backend = _sge(job)
    return None if backend is None else backend.allocation(backend.scheduler_job(job.job_id))


@hookimpl
def clustrix_job_metrics(job: Job) -> JobMetrics | None:
    backend = _sge(job)
    if backend is None:
        return None
    # A job that never ran (no runner record) will get no accounting record: do not wait for one.
    wait = ACCOUNTING_WAIT if job.meta is not None else 0.0
    return backend.accounting_metrics(backend.scheduler_job(job.job_id), job.session.config.backend, wait)
