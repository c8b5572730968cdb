"""The core's own plugin: the ``local`` backend and transport, and the cloudpickle serializer."""

from __future__ import annotations

from collections.abc import Mapping

from clustrix.backend import Backend
from clustrix.backends.process import ProcessBackend
from clustrix.hookspecs import hookimpl
from clustrix.job import Job
from clustrix.records import Allocation
from clustrix.transport import LocalTransport, Transport


class LocalBackend(ProcessBackend):
    """Each job a child process group on this machine: the embedded default."""


@hookimpl
def clustrix_backends() -> Mapping[str, type[Backend]]:
    return {"local": LocalBackend}


@hookimpl
def clustrix_transports() -> Mapping[str, type[Transport]]:
    return {"local": LocalTransport}


@hookimpl(trylast=True)
def clustrix_serializer() -> str:
    return "cloudpickle"


# The process backends (local, and ssh which builds on it) are their own scheduler: the
# job's directory and the runner's record are the queue and the accounting.


@hookimpl
def clustrix_job_in_queue(job: Job) -> bool | None:
    backend = job.session.backend
    if not isinstance(backend, ProcessBackend):
        return None
    return backend.knows(job.job_id)


@hookimpl
def clustrix_job_allocation(job: Job) -> Allocation | None:
    if not isinstance(job.session.backend, ProcessBackend) or job.meta is None:
        return None
    env, limits = job.meta.get("env", {}), job.meta.get("limits", {})
    time_limit = env.get("CLUSTRIX_TIME_LIMIT")
    return Allocation(
        cores=int(env["CLUSTRIX_CORES"]) if "CLUSTRIX_CORES" in env else None,
        memory=limits.get("address_space"),
        time_limit=int(time_limit) if time_limit else None,
        nodes=(job.meta["host"],),
    )
