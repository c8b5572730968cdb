"""Every error clustrix raises, rooted at ``ClustrixError``.

A user's own exception raised inside a job is NOT wrapped: it is re-raised with
its original type and the remote traceback attached as a note. These classes
are for what went wrong around the call: configuration, serialization,
submission, the scheduler, the result file, or a job that died without one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clustrix.state import JobState


class ClustrixError(Exception):
    """Base of every error raised by clustrix itself."""


class ConfigError(ClustrixError, ValueError):
    """A profile, decorator argument or resource string is invalid; the message names it."""


class SerializationError(ClustrixError):
    """The call cannot be pickled or is over the size limit; raised before anything is submitted."""


class SubmissionError(ClustrixError):
    """The scheduler refused the job; ``scheduler_output`` holds its own words."""

    def __init__(self, message: str, scheduler_output: str = "") -> None:
        super().__init__(f"{message}: {scheduler_output.strip()}" if scheduler_output.strip() else message)
        self.scheduler_output = scheduler_output


class BackendUnavailableError(ClustrixError):
    """The backend's host or scheduler cannot be reached, or its plugin is not installed."""


class NotInJobError(ClustrixError, RuntimeError):
    """Code asked for its task environment (``clustrix.task_environment()``) outside a clustrix job."""


class JobLostError(ClustrixError):
    """The job ended but clustrix could not collect it (its files could not be read, a plugin broke).

    The job's files are left where they are; the cause is chained.
    """


class ResultError(ClustrixError):
    """The job ended but its result cannot be used."""


class ResultMissingError(ResultError):
    """The job ended without writing a result file."""


class ResultCorruptError(ResultError):
    """The result file is not a readable envelope, or was written by an incompatible version."""


class ResultTooLargeError(ResultError):
    """The result file is larger than ``max_result_bytes``; it was not read and is left in place."""


class ResultTamperedError(ResultError):
    """The result file failed authentication and was not unpickled."""


class RemoteError(ClustrixError):
    """A remote exception whose class cannot be rebuilt here; carries its type name and traceback."""

    def __init__(self, type_name: str, message: str, remote_traceback: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.remote_traceback = remote_traceback


class JobFailedError(ClustrixError):
    """The job ended without a result: the scheduler's state and reason, and the tail of stderr."""

    def __init__(
        self,
        message: str,
        *,
        job_id: str = "",
        state: JobState | None = None,
        reason: str = "",
        exit_code: int | None = None,
        stderr_tail: str = "",
    ) -> None:
        details = [f"job {job_id}" if job_id else "", f"state {state.value}" if state else ""]
        details += [f"reason {reason}" if reason else "", f"exit code {exit_code}" if exit_code is not None else ""]
        text = f"{message} ({', '.join(d for d in details if d)})"
        if stderr_tail:
            text += f"\n--- end of the job's stderr ---\n{stderr_tail}"
        super().__init__(text)
        self.job_id = job_id
        self.state = state
        self.reason = reason
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail


class JobTimeoutError(JobFailedError, TimeoutError):
    """The scheduler ended the job at its time limit."""


class JobOutOfMemoryError(JobFailedError, MemoryError):
    """The job went over its memory limit."""


class JobCancelledError(JobFailedError):
    """The job was cancelled, by this client or by someone on the cluster."""


class DependencyFailedError(JobCancelledError):
    """The job never ran: a job it depends on did not complete."""


class JobPreemptedError(JobFailedError):
    """The scheduler preempted the job for another and did not requeue it."""


class JobExitError(JobFailedError):
    """The call ended the job's Python with ``sys.exit()`` (``SystemExit``); ``exit_code`` is its code."""


class NodeFailureError(JobFailedError):
    """The node running the job failed, or the job's process vanished without an exit status."""


class JobEnvironmentError(JobFailedError):
    """The runner could not load the call on the far side (Python version, missing module, ...)."""
