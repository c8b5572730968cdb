"""clustrix: decorate a Python function, call it, and it runs as a job on a cluster.

from clustrix import cluster

@cluster(cores=2, memory="1GB", time="00:05:00")
def add(x, y):
    return x + y

add(10, 32)   # 42, computed in a real job

``import clustrix`` loads only what decorating a function needs, and the errors; the other
public names, and the plugins and sessions a call needs, are imported on first use. It also
makes joblib's ``parallel_config(backend="clustrix")`` work, without importing joblib
(clustrix.joblib_hook).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clustrix import joblib_hook
from clustrix.api import ClusterFunction, cluster
from clustrix.attach import attach
from clustrix.errors import (
    BackendUnavailableError,
    ClustrixError,
    ConfigError,
    DependencyFailedError,
    JobCancelledError,
    JobEnvironmentError,
    JobExitError,
    JobFailedError,
    JobLostError,
    JobOutOfMemoryError,
    JobPreemptedError,
    JobTimeoutError,
    NodeFailureError,
    NotInJobError,
    RemoteError,
    ResultCorruptError,
    ResultError,
    ResultMissingError,
    ResultTamperedError,
    ResultTooLargeError,
    SerializationError,
    SubmissionError,
)
from clustrix.resources import Resources

if TYPE_CHECKING:
    from clustrix.environment import TaskEnvironment, task_environment
    from clustrix.executor import Executor
    from clustrix.hookspecs import hookimpl
    from clustrix.job import ClusterFuture, Job, cancel
    from clustrix.parallel import job_cores, pmap
    from clustrix.state import JobState, JobStatus
    from clustrix.version import __version__
    from clustrix.waiting import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, as_completed, progress, wait

# The public names decorating does not need, imported on first use (PEP 562) from the module
# that defines them: clustrix.job loads asyncio, clustrix.hookspecs pluggy, clustrix.parallel
# multiprocessing and cloudpickle, clustrix.version importlib.metadata, clustrix.waiting
# concurrent.futures (and tqdm only when a bar is to be drawn), clustrix.environment socket,
# clustrix.executor the profiles and sessions.
_LAZY = {
    "Executor": "clustrix.executor",
    "ClusterFuture": "clustrix.job",
    "Job": "clustrix.job",
    "cancel": "clustrix.job",
    "TaskEnvironment": "clustrix.environment",
    "task_environment": "clustrix.environment",
    "hookimpl": "clustrix.hookspecs",
    "job_cores": "clustrix.parallel",
    "pmap": "clustrix.parallel",
    "JobState": "clustrix.state",
    "JobStatus": "clustrix.state",
    "__version__": "clustrix.version",
    "ALL_COMPLETED": "clustrix.waiting",
    "FIRST_COMPLETED": "clustrix.waiting",
    "FIRST_EXCEPTION": "clustrix.waiting",
    "as_completed": "clustrix.waiting",
    "progress": "clustrix.waiting",
    "wait": "clustrix.waiting",
}

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "BackendUnavailableError",
    "ClusterFunction",
    "ClusterFuture",
    "ClustrixError",
    "ConfigError",
    "DependencyFailedError",
    "Executor",
    "Job",
    "JobCancelledError",
    "JobEnvironmentError",
    "JobExitError",
    "JobFailedError",
    "JobLostError",
    "JobOutOfMemoryError",
    "JobPreemptedError",
    "JobState",
    "JobStatus",
    "JobTimeoutError",
    "NodeFailureError",
    "NotInJobError",
    "RemoteError",
    "Resources",
    "ResultCorruptError",
    "ResultError",
    "ResultMissingError",
    "ResultTamperedError",
    "ResultTooLargeError",
    "SerializationError",
    "SubmissionError",
    "TaskEnvironment",
    "__version__",
    "as_completed",
    "attach",
    "cancel",
    "cluster",
    "hookimpl",
    "job_cores",
    "pmap",
    "progress",
    "task_environment",
    "wait",
]

joblib_hook.install()


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    # Bound as a global, the name is found directly from now on, without this function.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
