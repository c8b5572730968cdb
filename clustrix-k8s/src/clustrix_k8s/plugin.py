"""Entry point module (group ``clustrix``): the ``kubernetes`` backend and its half of the validator."""

from __future__ import annotations

from collections.abc import Mapping

from clustrix.backend import Backend
from clustrix.hookspecs import hookimpl
from clustrix.job import Job
from clustrix.records import Allocation, JobMetrics
from clustrix_k8s.backend import KubernetesBackend


@hookimpl
def clustrix_backends() -> Mapping[str, type[Backend]]:
    return {"kubernetes": KubernetesBackend}


def _kubernetes(job: Job) -> KubernetesBackend | None:
    backend = job.session.backend
    return backend if isinstance(backend, KubernetesBackend) else None


@hookimpl
def clustrix_job_in_queue(job: Job) -> bool | None:
    backend = _kubernetes(job)
    return None if backend is None else backend.knows(job.job_id)


@hookimpl
def clustrix_job_allocation(job: Job) -> Allocation | None:
    backend = _kubernetes(job)
    return None if backend is None else backend.allocation(job.job_id)


@hookimpl
def clustrix_job_metrics(job: Job) -> JobMetrics | None:
    backend = _kubernetes(job)
    return None if backend is None else backend.metrics(job)
