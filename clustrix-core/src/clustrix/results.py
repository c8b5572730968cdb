"""From a finished job's state and result file to the value or the exception its future gets.

The rule: an authentic result of a call that returned gives its value, even if the
scheduler killed its task afterwards (a chunk's later call was running then).
Otherwise a scheduler's kill (time limit, memory, cancel, node failure, preemption)
raises its ``JobFailedError`` subclass, with the remote exception, if any, as its
cause; else the user's ORIGINAL exception, with the remote traceback attached as a
note and its ``__cause__``/``__context__`` chain rebuilt link by link; no result at
all is an error that says which state the scheduler reported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clustrix import runner
from clustrix.errors import (
    DependencyFailedError,
    JobCancelledError,
    JobEnvironmentError,
    JobExitError,
    JobFailedError,
    JobOutOfMemoryError,
    JobPreemptedError,
    JobTimeoutError,
    NodeFailureError,
    RemoteError,
    ResultCorruptError,
    ResultMissingError,
    ResultTamperedError,
)
from clustrix.state import JobState

if TYPE_CHECKING:
    from clustrix.job import Job

_KILLED: dict[JobState, tuple[type[JobFailedError], str]] = {
    JobState.TIMEOUT: (JobTimeoutError, "the job reached its time limit"),
    JobState.OUT_OF_MEMORY: (JobOutOfMemoryError, "the job went over its memory limit"),
    JobState.CANCELLED: (JobCancelledError, "the job was cancelled"),
    JobState.NODE_FAIL: (NodeFailureError, "the job's node failed"),
    JobState.PREEMPTED: (JobPreemptedError, "the job was preempted and not requeued"),
}


class Outcome:
    """Either ``value`` or ``exception`` is meaningful, as ``ok`` says.

    ``checkpointed``: the call saved the call to resume with instead of ending; the session
    submits it again, and ``exception`` is what the future gets if it does not.
    """

    def __init__(
        self, ok: bool, value: Any = None, exception: BaseException | None = None, checkpointed: bool = False
    ) -> None:
        self.ok = ok
        self.value = value
        self.exception = exception
        self.checkpointed = checkpointed


def outcome(job: Job, result: bytes | None, stderr_tail: str) -> Outcome:
    status = job.status
    failure = dict(
        job_id=job.job_id,
        state=status.state,
        reason=status.reason,
        exit_code=status.exit_code,
        stderr_tail=stderr_tail,
    )
    remote: BaseException | None = None
    if result is not None:
        try:
            header, payload = runner.unpack(result, job.hmac_key, "result")
        except runner.EnvelopeError as exc:
            error = ResultTamperedError if exc.problem == "tampered" else ResultCorruptError
            said = f" ({status.reason})" if status.reason else ""
            return Outcome(
                False, exception=error(f"job {job.job_id}: result file {job.directory}/result.pkl: {exc}{said}")
            )
        try:
            record = runner.loads(header, payload)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing here
            return Outcome(
                False,
                exception=ResultCorruptError(
                    f"job {job.job_id}: the result could not be unpickled here: {type(exc).__name__}: {exc}"
                ),
            )
        if record["ok"]:
            # The call returned before any kill: in a chunk, the calls before the one that was
            # running when the task was killed keep their values.
            return Outcome(True, value=record["value"])
        if record["phase"] == "checkpoint":
            cls, message = _KILLED.get(status.state, (JobFailedError, f"the call checkpointed ({record['message']})"))
            return Outcome(False, exception=cls(message, **failure), checkpointed=True)
        remote = _remote_exception(job, header, record, failure)
    failed_upstream = [up for up in job.waits_for if up.state.finished and up.state is not JobState.COMPLETED]
    if failed_upstream and result is None:
        up = failed_upstream[0]
        return Outcome(
            False,
            exception=DependencyFailedError(
                f"the job never ran: job {up.job_id} it depends on ended {up.state.value}", **failure
            ),
        )
    if status.state in _KILLED:
        cls, message = _KILLED[status.state]
        error = cls(message, **failure)
        error.__cause__ = remote
        return Outcome(False, exception=error)
    if remote is not None:
        return Outcome(False, exception=remote)
    if status.state is JobState.COMPLETED:
        said = f" ({status.reason})" if status.reason else ""
        return Outcome(
            False, exception=ResultMissingError(f"job {job.job_id} completed but wrote no result file{said}")
        )
    return Outcome(False, exception=JobFailedError("the job ended without a result", **failure))


def _remote_exception(job: Job, header: dict, record: dict, failure: dict) -> BaseException:
    host = (job.meta or {}).get("host", "the cluster")
    note = f"Remote traceback (job {job.job_id} on {host}):\n{record['traceback'].rstrip()}"
    if record["phase"] == "call":
        exc: BaseException | None = None
        if record.get("exception") is not None:
            try:
                exc = runner.loads(header, record["exception"])
            except Exception:  # noqa: BLE001 - the class may not exist here; RemoteError carries it
                exc = None
        if isinstance(exc, SystemExit):
            # Re-raised here it would end the caller's program: the job's exit is a job failure.
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            exc = JobExitError(f"the call ended its job with sys.exit({exc.code!r})", **{**failure, "exit_code": code})
        elif isinstance(exc, BaseException) and not isinstance(exc, Exception):
            # KeyboardInterrupt and the like: raised here they would look like the caller's own.
            exc = RemoteError(record["type"], record["message"], record["traceback"])
        elif not isinstance(exc, BaseException):
            exc = RemoteError(record["type"], record["message"], record["traceback"])
    else:
        what = "load the call" if record["phase"] == "load" else "pickle the return value"
        exc = JobEnvironmentError(f"the runner could not {what}: {record['type']}: {record['message']}", **failure)
    exc.remote_traceback = record["traceback"]  # type: ignore[attr-defined]
    exc.add_note(note)
    _relink(exc, header, record.get("chain", []))
    return exc


def _rebuild(header: dict, pickled: bytes | None) -> BaseException | None:
    if pickled is None:
        return None
    try:
        exc = runner.loads(header, pickled)
    except Exception:  # noqa: BLE001 - the class may not exist here; RemoteError carries it
        return None
    return exc if isinstance(exc, Exception) else None


def _relink(exc: BaseException, header: dict, chain: list) -> None:
    """Give ``exc`` back the ``__cause__``/``__context__`` chain it had in the job."""
    for link in chain:
        linked = _rebuild(header, link["exception"]) or RemoteError(link["type"], link["message"], "")
        if link["relation"] == "cause":
            exc.__cause__ = linked
        else:
            exc.__context__ = linked
        exc = linked
