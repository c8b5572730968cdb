"""The hooks a clustrix plugin can implement (pluggy, project name ``clustrix``).

A plugin is a module or object with ``@hookimpl`` functions, registered through an
entry point in the ``clustrix`` group: ``[project.entry-points.clustrix] myname = "my_pkg.plugin"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from clustrix.backend import Backend
    from clustrix.job import Job
    from clustrix.state import JobState
    from clustrix.transport import Transport

hookspec = pluggy.HookspecMarker("clustrix")
hookimpl = pluggy.HookimplMarker("clustrix")


@hookspec
def clustrix_backends() -> Mapping[str, type[Backend]]:
    """Return the backends this plugin provides, by the name profiles use (``backend = "NAME"``)."""


@hookspec
def clustrix_transports() -> Mapping[str, type[Transport]]:
    """Return the transports this plugin provides, by the name profiles use (``transport = "NAME"``)."""


@hookspec(firstresult=True)
def clustrix_serializer() -> str:
    """Return the name of a module with pickle-compatible ``dumps``/``loads`` to serialize calls.

    The far side imports the same module by name, so it must be installed there too.
    The core's default answers ``"cloudpickle"``; the first non-None answer wins.
    """


@hookspec
def clustrix_job_submitted(job: Job) -> None:
    """Called once the scheduler has accepted ``job`` and given it an id."""


@hookspec
def clustrix_job_state_changed(job: Job, old: JobState, new: JobState) -> None:
    """Called from the monitor when a poll finds ``job`` in a new state."""


@hookspec
def clustrix_job_requeued(job: Job, previous_job_id: str) -> None:
    """Called when ``job``'s call checkpointed in ``previous_job_id`` and the job was submitted
    again to resume it; ``job.job_id`` is the new job's id."""


@hookspec
def clustrix_job_retried(job: Job, previous_job_id: str, error: BaseException) -> None:
    """Called when ``job``'s call failed in ``previous_job_id`` with ``error`` (a failure outside
    the call, or a type its ``retry_on`` names) and runs again: ``job.job_id`` is the new run's id
    (the same for a call that went back to its map's queue), ``job.retries`` counts the retries."""


@hookspec
def clustrix_job_finished(job: Job) -> None:
    """Called once ``job`` has ended and its files are read, before its directory is cleaned
    and before its future is resolved, so a waiting caller sees every observer's work done."""
