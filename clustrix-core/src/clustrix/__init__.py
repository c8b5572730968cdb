"""clustrix: decorate a Python function, call it, and it runs as a job on a cluster.

from clustrix import cluster

@cluster(cores=2, memory="1GB", time="00:05:00")
def add(x, y):
    return x + y

add(10, 32)   # 42, computed in a real job
"""

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
    RemoteError,
    ResultCorruptError,
    ResultError,
    ResultMissingError,
    ResultTamperedError,
    ResultTooLargeError,
    SerializationError,
    SubmissionError,
)
from clustrix.hookspecs import hookimpl
from clustrix.job import ClusterFuture, Job, cancel
from clustrix.parallel import job_cores, pmap
from clustrix.resources import Resources
from clustrix.state import JobState, JobStatus
from clustrix.version import __version__

__all__ = [
    "BackendUnavailableError",
    "ClusterFunction",
    "ClusterFuture",
    "ClustrixError",
    "ConfigError",
    "DependencyFailedError",
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
    "RemoteError",
    "Resources",
    "ResultCorruptError",
    "ResultError",
    "ResultMissingError",
    "ResultTamperedError",
    "ResultTooLargeError",
    "SerializationError",
    "SubmissionError",
    "__version__",
    "attach",
    "cancel",
    "cluster",
    "hookimpl",
    "job_cores",
    "pmap",
]
