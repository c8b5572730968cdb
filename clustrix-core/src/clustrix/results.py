"""From a finished job's state and result files to the value or the exception its future gets.

A call runs on one task or several (ranks); each rank writes its own result file, and a
call of one task is the 1-rank case. The rule: authentic results of every rank, each a
call that returned, give the value (rank 0's, or all of them with ``gather="all"``), even
if the scheduler killed the task afterwards (a chunk's later call was running then).
Otherwise the lowest rank that raised speaks for the call (its exception's ``rank`` says
which), and a scheduler's kill (time limit, memory, cancel, node failure, preemption)
raises its ``JobFailedError`` subclass, with the remote exception, if any, as its
cause; else the user's ORIGINAL exception, with the remote traceback attached as a
note and its ``__cause__``/``__context__`` chain rebuilt link by link; no result at
all is an error that says which state the scheduler reported.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def outcome(job: Job, results: Sequence[bytes | None], stderr_tail: str) -> Outcome:
    """The outcome of ``job`` from its ranks' result files (one per task, rank order; None where missing)."""
    status = job.status
    failure = dict(
        job_id=job.job_id,
        state=status.state,
        reason=status.reason,
        exit_code=status.exit_code,
        stderr_tail=stderr_tail,
    )
    records: list[tuple[dict, dict] | None] = []
    for rank, result in enumerate(results):
        if result is None:
            records.append(None)
            continue
        try:
            header, payload = runner.unpack(result, job.hmac_key, "result")
        except runner.EnvelopeError as exc:
            error = ResultTamperedError if exc.problem == "tampered" else ResultCorruptError
            said = f" ({status.reason})" if status.reason else ""
            where = f"{job.directory}/{runner.rank_file(runner.RESULT_FILE, rank)}"
            return Outcome(False, exception=error(f"job {job.job_id}: result file {where}: {exc}{said}"))
        try:
            records.append((header, runner.loads(header, payload)))
        except BaseException as exc:  # noqa: BLE001 - unpickling runs the pickle's code: SystemExit too
            return Outcome(
                False,
                exception=ResultCorruptError(
                    f"job {job.job_id}{_of_rank(rank, len(results))}: the result could not be unpickled here: "
                    f"{type(exc).__name__}: {exc}"
                ),
            )
    if all(found is not None and found[1]["ok"] for found in records):
        # Every rank returned before any kill: in a chunk too, the calls before the one that
        # was running when the task was killed keep their values.
        values = [found[1]["value"] for found in records if found is not None]
        return Outcome(True, value=runner.gathered(values, job.spec.gather))
    saved = next((found[1] for found in records if found is not None and found[1].get("phase") == "checkpoint"), None)
    if saved is not None:
        cls, message = _KILLED.get(status.state, (JobFailedError, f"the call checkpointed ({saved['message']})"))
        return Outcome(False, exception=cls(message, **failure), checkpointed=True)
    # The lowest rank that raised speaks for the call: the others may have been killed because of it.
    raised = [(rank, *found) for rank, found in enumerate(records) if found is not None and not found[1]["ok"]]
    remote = _remote_exception(job, *raised[0], failure) if raised else None
    failed_upstream = [up for up in job.waits_for if up.state.finished and up.state is not JobState.COMPLETED]
    if failed_upstream and all(found is None for found in records):
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
        missing = ", ".join(str(rank) for rank, found in enumerate(records) if found is None)
        ranks = f" for rank {missing} of {len(records)}" if len(records) > 1 else ""
        return Outcome(
            False, exception=ResultMissingError(f"job {job.job_id} completed but wrote no result file{ranks}{said}")
        )
    return Outcome(False, exception=JobFailedError("the job ended without a result", **failure))


def _of_rank(rank: int, ranks: int) -> str:
    """`` (rank R of N)`` for a call on several tasks; nothing for a call of one."""
    return f" (rank {rank} of {ranks})" if ranks > 1 else ""


def _remote_exception(job: Job, rank: int, header: dict, record: dict, failure: dict) -> BaseException:
    """The exception rank ``rank`` raised, as it was there, with its traceback and its rank attached."""
    meta = job.metas[rank] if rank < len(job.metas) else None
    host = (meta or {}).get("host", "the cluster")
    where = _of_rank(rank, job.spec.resources.tasks)
    note = f"Remote traceback (job {job.job_id}{where} on {host}):\n{record['traceback'].rstrip()}"
    if record["phase"] == "call":
        exc: BaseException | None = None
        if record.get("exception") is not None:
            try:
                exc = runner.loads(header, record["exception"])
            except BaseException:  # noqa: BLE001 - the class may not exist here, or unpickling exits
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
    exc.rank = rank  # type: ignore[attr-defined]
    exc.add_note(note)
    _relink(exc, header, record.get("chain", []))
    return exc


def _rebuild(header: dict, pickled: bytes | None) -> BaseException | None:
    if pickled is None:
        return None
    try:
        exc = runner.loads(header, pickled)
    except BaseException:  # noqa: BLE001 - the class may not exist here, or unpickling exits
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
