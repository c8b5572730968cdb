"""Entry point module (group ``clustrix``): the ``slurm`` backend and its half of the validator."""

from __future__ import annotations

from collections.abc import Mapping

from clustrix.backend import Backend
from clustrix.hookspecs import hookimpl
from clustrix.job import Job
from clustrix.records import Allocation, JobMetrics
from clustrix_slurm.backend import SlurmBackend


@hookimpl
def clustrix_backends() -> Mapping[str, type[Backend]]:
    return {"slurm": SlurmBackend}


def _slurm(job: Job) -> SlurmBackend | None:
    backend = job.session.backend
    return backend if isinstance(backend, SlurmBackend) else None


@hookimpl
def clustrix_job_in_queue(job: Job) -> bool | None:
    backend = _slurm(job)
    return None if backend is None else backend.scontrol_record(backend.scheduler_job(job.job_id)) is not None


@hookimpl
def clustrix_job_allocation(job: Job) -> Allocation | None:
    backend = _slurm(job)
    return None if backend is None else backend.allocation(backend.scheduler_job(job.job_id))


@hookimpl
def clustrix_job_metrics(job: Job) -> JobMetrics | None:
    backend = _slurm(job)
    return (
        None
        if backend is None
        else backend.accounting_metrics(backend.scheduler_job(job.job_id), job.session.config.backend)
    )
