"""The client's side of workers that claim calls: a batch's files, and each call's state from them.

A ``map`` runs as workers sharing one batch directory (the runner's ``work`` is the other
side): an array of worker tasks on a batch scheduler, a few worker processes on the
process backends. A call's state is then not any task's state: it is read from the batch
directory (claimed by which worker, ended how, cancelled) together with the state of the
worker that claimed it. One listing command per poll reads every batch's files; the
scheduler is asked about worker tasks only. ``WorkerPool`` does this for a backend that
can launch and cancel workers (``Launcher``).

Call ids are ``<prefix>#<index>`` (the prefix: the first workers' array id, or the batch's
name): the scheduler never sees them.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import attrs

from clustrix import runner
from clustrix.backend import RUNNER_SOURCE, Leftovers, StagedJob
from clustrix.errors import BackendUnavailableError, ClustrixError
from clustrix.log import get_logger
from clustrix.state import JobState, JobStatus

if TYPE_CHECKING:
    from clustrix.config import ClusterConfig
    from clustrix.transport import Transport

# How much of the workers' own output explains why no worker ran a call.
WORKER_OUTPUT_TAIL = 2000

SEPARATOR = "#"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\[\]-]")
# A worker task's id as a backend names it (a scheduler's id, or the process backends' batch:worker).
_TASK = re.compile(r"[A-Za-z0-9_.\[\]:@-]+")
NO_WORKER_RAN = "no worker ran it"

# Each batch's files, one ``@ DIR`` line then ``KIND NAME`` lines; a missing directory lists nothing.
LISTING = f"""
for d in "$@"; do
  echo "@ $d"
  for k in {runner.CLAIMED_DIR} {runner.ENDED_DIR} {runner.CANCELLED_DIR}; do
    ls -1 "$d/$k" 2>/dev/null | sed "s|^|$k |"
  done
done
"""

# The client cancels calls: an unclaimed one is moved out of the queue (then no worker can
# claim it); for one a worker already claimed, a marker tells that worker to kill it.
CANCEL = f"""
b=$1; shift
for i in "$@"; do
  mv "$b/{runner.QUEUE_DIR}/$i" "$b/{runner.CANCELLED_DIR}/$i" 2>/dev/null || : > "$b/{runner.CANCEL_DIR}/$i"
done
"""

# The client puts an ended call back in the queue (a retry): its claim goes back, its end goes.
REQUEUE = f"""
b=$1; shift
for i in "$@"; do
  for c in "$b/{runner.CLAIMED_DIR}/$i".*; do [ -e "$c" ] && mv -- "$c" "$b/{runner.QUEUE_DIR}/$i"; done
  [ -e "$b/{runner.QUEUE_DIR}/$i" ] || exit 3
  rm -f -- "$b/{runner.ENDED_DIR}/$i".* "$b/{runner.CANCEL_DIR}/$i"
done
"""

_KILL_STATES = frozenset(
    {JobState.TIMEOUT, JobState.OUT_OF_MEMORY, JobState.CANCELLED, JobState.NODE_FAIL, JobState.PREEMPTED}
)


def call_id(prefix: str, index: int) -> str:
    return f"{prefix}{SEPARATOR}{index}"


def is_call_id(job_id: str) -> bool:
    return SEPARATOR in job_id


def split_calls(job_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """``job_ids`` as (calls run by workers, the backend's own job ids), each in order."""
    return [j for j in job_ids if is_call_id(j)], [j for j in job_ids if not is_call_id(j)]


def queue_files(batch_dir: str, directories: Sequence[str]) -> dict[str, bytes]:
    """The queue a batch's workers claim from: call ``i``'s file holds its job directory."""
    width = len(str(len(directories)))
    return {
        f"{batch_dir}/{runner.QUEUE_DIR}/{index:0{width}d}": directory.encode()
        for index, directory in enumerate(directories)
    }


def subdirectories(batch_dir: str) -> list[str]:
    dirs = (runner.QUEUE_DIR, runner.CLAIMED_DIR, runner.ENDED_DIR, runner.CANCELLED_DIR, runner.CANCEL_DIR)
    return [f"{batch_dir}/{name}" for name in dirs]


@attrs.frozen
class Listing:
    """What a batch directory says: each call's worker, how ended calls ended, which were cancelled."""

    claimed: Mapping[int, str]
    ended: Mapping[int, tuple[JobState, int | None]]
    cancelled: frozenset[int]


def parse_listing(text: str) -> dict[str, Listing]:
    found: dict[str, tuple[dict, dict, set]] = {}
    current = None
    for line in text.splitlines():
        kind, _, name = line.partition(" ")
        if kind == "@":
            current = found.setdefault(name, ({}, {}, set()))
            continue
        if current is None or not name:
            continue
        head, _, rest = name.partition(".")
        if not head.isdigit() or name.endswith(".tmp"):
            continue
        index = int(head)
        if kind == runner.CLAIMED_DIR:
            current[0][index] = rest
        elif kind == runner.ENDED_DIR:
            state, _, code = rest.partition(".")
            if state in JobState.__members__:
                current[1][index] = (JobState[state], int(code) if code.lstrip("-").isdigit() else None)
        elif kind == runner.CANCELLED_DIR:
            current[2].add(index)
    return {d: Listing(claimed, ended, frozenset(cancelled)) for d, (claimed, ended, cancelled) in found.items()}


@attrs.define
class WorkerBatch:
    """One ``map``'s workers as the client tracks them."""

    directory: str
    prefix: str
    calls: int
    # Worker tasks per launch: the first array's size, the most ever started again at once.
    size: int
    tasks: list[str]
    # A call of the batch without its dependencies: what a later launch of workers is made from;
    # None in a client that attached to the batch (it cannot launch workers).
    template: StagedJob | None
    # Claims seen when workers were last launched: launch again only after progress, so it ends.
    claims_at_launch: int = 0
    launches: int = 1
    # Workers already cancelled for having nothing left to claim (asked once each).
    drained: set[str] = attrs.field(factory=set)
    finished: set[int] = attrs.field(factory=set)

    def requeued(self, index: int) -> None:
        """Call ``index`` is back in the queue: it is not finished, and if no worker is left to claim it,
        new ones are started (whatever the claims since the last launch)."""
        self.finished.discard(index)
        self.claims_at_launch = -1

    @property
    def width(self) -> int:
        """Digits in a call's queue file name."""
        return len(str(self.calls))

    def record(self) -> bytes:
        """What another client needs to follow the batch (``clustrix.attach``), as JSON."""
        fields = ("directory", "prefix", "calls", "size", "tasks", "claims_at_launch", "launches")
        return json.dumps({name: getattr(self, name) for name in fields}).encode()

    @classmethod
    def from_record(cls, data: bytes) -> WorkerBatch:
        return cls(**json.loads(data), template=None)

    def relaunched(self, tasks: Sequence[str], claims: int) -> None:
        self.tasks += tasks
        self.claims_at_launch = claims
        self.launches += 1

    def statuses(
        self, listing: Listing, tasks: Mapping[str, JobStatus]
    ) -> tuple[dict[int, JobStatus], list[str], bool]:
        """Each call's status; the worker tasks to cancel (never started, nothing left); whether to relaunch.

        ``tasks`` is the scheduler's answer for this batch's worker tasks (those it still knows).
        """
        active = [t for t in self.tasks if t in tasks and not tasks[t].state.finished]
        statuses: dict[int, JobStatus] = {}
        unclaimed = []
        for index in range(self.calls):
            if index in listing.ended:
                state, code = listing.ended[index]
                statuses[index] = JobStatus(state, reason=_ENDED_REASONS.get(state, ""), exit_code=code)
            elif index in listing.cancelled:
                statuses[index] = JobStatus(JobState.CANCELLED, reason="cancelled before a worker claimed it")
            elif index in listing.claimed:
                statuses[index] = _claimed_status(listing.claimed[index], tasks)
            else:
                unclaimed.append(index)
        relaunch = False
        waiting = JobStatus(JobState.PENDING, reason="waiting for a worker")
        if unclaimed and not active:
            if len(listing.claimed) > self.claims_at_launch and self.template is not None:
                # Workers ran but all ended with calls left (killed, or out of time): start more.
                relaunch = True
                waiting = JobStatus(JobState.PENDING, reason="its workers ended first; starting new ones")
            else:
                # The latest worker's end says best why none is left (a relaunch that failed too).
                last = next((tasks[t] for t in reversed(self.tasks) if t in tasks), None)
                waiting = JobStatus(
                    last.state if last else JobState.UNKNOWN,
                    reason=f"{NO_WORKER_RAN}: {last.reason if last else 'the scheduler forgot the workers'}",
                    exit_code=last.exit_code if last else None,
                )
        for index in unclaimed:
            statuses[index] = waiting
        self.finished |= {index for index, status in statuses.items() if status.state.finished}
        drain = []
        if not unclaimed:
            # Every poll, not once: a scheduler may report a pending task only some polls later.
            # The scheduler was asked before the files were listed: a task it called pending
            # may have started and claimed a call since, and must not be cancelled during it.
            started = set(listing.claimed.values())
            drain = [t for t in self.tasks if t in tasks and tasks[t].state is JobState.PENDING]
            drain = [t for t in drain if t not in self.drained and t not in started]
            self.drained |= set(drain)
        return statuses, drain, relaunch


_ENDED_REASONS = {
    JobState.TIMEOUT: "killed by its worker at the call's time limit",
    JobState.OUT_OF_MEMORY: "out of memory inside its worker",
    JobState.CANCELLED: "cancelled inside its worker",
}


def _claimed_status(worker: str, tasks: Mapping[str, JobStatus]) -> JobStatus:
    """A claimed call that has not ended runs as long as its worker; if the worker ended, it died with it."""
    status = tasks.get(worker)
    if status is None:
        return JobStatus(JobState.UNKNOWN, reason=f"its worker {worker} is no longer known")
    if not status.state.finished:
        return JobStatus(JobState.RUNNING, reason=f"in worker {worker}", nodes=status.nodes)
    state = status.state if status.state in _KILL_STATES else JobState.FAILED
    why = f": {status.reason}" if status.reason else ""
    return JobStatus(state, reason=f"its worker {worker} ended {status.state.value} during the call{why}")


def record_directory(workdir: str, prefix: str) -> str:
    """Where a batch's record is found from its calls' ids."""
    return f"{workdir}/workers-{_UNSAFE.sub('_', prefix)}"


def listing_command(batch_dirs: Sequence[str]) -> list[str]:
    return ["sh", "-c", LISTING, "sh", *batch_dirs]


def cancel_command(batch_dir: str, indices: Sequence[int], width: int) -> list[str]:
    return ["sh", "-c", CANCEL, "sh", batch_dir, *(f"{index:0{width}d}" for index in indices)]


class Launcher(Protocol):
    """What a backend gives ``WorkerPool``: where things are, and how workers start and end."""

    config: ClusterConfig
    transport: Transport

    @property
    def workdir(self) -> str: ...

    def launch_workers(
        self, jobs: Sequence[StagedJob], batch_dir: str, size: int, number: int
    ) -> tuple[str, list[str]]:
        """Start ``size`` workers on ``batch_dir`` (launch ``number``); a prefix for call ids, and their ids."""

    def worker_output(self, batch_dir: str) -> str:
        """A file where the first workers' own output (setup included) lands."""

    def cancel(self, job_ids: Sequence[str]) -> None: ...

    def retire_workers(self, tasks: Sequence[str]) -> None:
        """Every call of their batch ended: the workers ``tasks`` have nothing left to do."""

    def follow_workers(self, batch_dir: str, tasks: Sequence[str]) -> None:
        """This client adopted the batch in ``batch_dir`` (attach): its worker ``tasks``, in launch order,
        were launched by another client, and their states will be asked for."""


# How many ended batches a pool remembers, for questions about their calls (``knows``).
ENDED_BATCHES_KEPT = 1000


class WorkerPool:
    """A backend's worker batches: submitted, followed (re-attached from records too), cancelled, cleaned."""

    def __init__(self, backend: Launcher) -> None:
        self.backend = backend
        self.lock = threading.Lock()
        # A poll's listing and what it concludes, or a call's return to the queue: one at a time, so
        # a listing read before a call went back is never taken for that call's end.
        self._reading = threading.Lock()
        self._batches: dict[str, WorkerBatch] = {}
        # The worker each call was claimed by; worker tasks seen ended (not asked about again).
        self._ran_in: dict[str, str] = {}
        self._tasks_ended: dict[str, JobStatus] = {}
        # Each batch's calls: it is cleaned after the last one ended.
        self._unfinished = Leftovers()
        # Batches followed here until all their calls ended (the newest ENDED_BATCHES_KEPT).
        self._ended_batches: dict[str, None] = {}
        self.log = get_logger(cluster=backend.config.label)

    def submit(self, jobs: Sequence[StagedJob], size: int) -> list[str]:
        """Queue the calls in a new batch directory and launch ``size`` workers; the calls' ids."""
        transport = self.backend.transport
        batch_dir = f"{self.backend.workdir}/batch-{uuid.uuid4().hex}"
        transport.make_dirs([batch_dir, *subdirectories(batch_dir)], 0o700)
        try:
            transport.write_files(queue_files(batch_dir, [job.directory for job in jobs]), 0o600)
            transport.write_files({f"{batch_dir}/runner.py": RUNNER_SOURCE}, 0o600)
            prefix, tasks = self.backend.launch_workers(jobs, batch_dir, size, 0)
        except BaseException:
            transport.remove_trees([batch_dir])
            raise
        batch = WorkerBatch(batch_dir, prefix, len(jobs), size, tasks, template=attrs.evolve(jobs[0], after=()))
        self._write_record(batch, new=True)
        self._unfinished.track(prefix, range(len(jobs)))
        with self.lock:
            self._batches[prefix] = batch
        return [call_id(prefix, index) for index in range(len(jobs))]

    def tasks_to_ask(self, calls: Sequence[str]) -> list[str]:
        """The worker tasks whose state the next ``statuses`` needs (batches of other clients adopted)."""
        prefixes = {job_id.rpartition(SEPARATOR)[0] for job_id in calls}
        for prefix in prefixes:
            with self.lock:
                known = prefix in self._batches
            if not known:
                self._adopt(prefix)
        with self.lock:
            return [
                t
                for prefix in prefixes
                if prefix in self._batches
                for t in self._batches[prefix].tasks
                if t not in self._tasks_ended
            ]

    def statuses(self, calls: Sequence[str], found: Mapping[str, JobStatus]) -> dict[str, JobStatus]:
        """Each call's status from its batch's files and ``found`` (the state of ``tasks_to_ask``'s tasks)."""
        unknown = JobStatus(JobState.UNKNOWN, reason="not a batch this client knows: its result file decides")
        statuses = dict.fromkeys(calls, unknown)
        with self.lock:
            batches = {
                prefix: self._batches[prefix]
                for prefix in {job_id.rpartition(SEPARATOR)[0] for job_id in calls}
                if prefix in self._batches
            }
        if not batches:
            return statuses
        with self._reading:
            return self._statuses(calls, batches, statuses, found)

    def _statuses(
        self,
        calls: Sequence[str],
        batches: Mapping[str, WorkerBatch],
        statuses: dict[str, JobStatus],
        found: Mapping[str, JobStatus],
    ) -> dict[str, JobStatus]:
        listed = self.backend.transport.run(listing_command([batch.directory for batch in batches.values()]))
        listings = parse_listing(listed.check(BackendUnavailableError, "reading the workers' files").stdout)
        for prefix, batch in batches.items():
            with self.lock:
                self._tasks_ended.update((t, s) for t, s in found.items() if t in batch.tasks and s.state.finished)
                tasks = {t: s for t in batch.tasks if (s := self._tasks_ended.get(t) or found.get(t)) is not None}
            listing = listings.get(batch.directory) or Listing({}, {}, frozenset())
            by_index, drain, relaunch = batch.statuses(listing, tasks)
            if relaunch:
                by_index.update(self._relaunch(batch, by_index, len(listing.claimed)))
            with self.lock:
                self._ran_in.update((call_id(prefix, index), worker) for index, worker in listing.claimed.items())
            for index, status in by_index.items():
                if status.reason.startswith(NO_WORKER_RAN):
                    status = attrs.evolve(status, reason=f"{status.reason}{self._workers_said(batch)}")
                statuses[call_id(prefix, index)] = status
            if drain:
                # Cancelling hundreds of tasks takes the scheduler a while: not in the poll's way.
                threading.Thread(
                    target=self._end_idle, args=(batch, self.backend.cancel, drain), name="clustrix-drain", daemon=True
                ).start()
            self._clean(prefix, batch, by_index)
        return {job_id: statuses[job_id] for job_id in calls}

    def cancel(self, calls: Sequence[str]) -> list[str]:
        """Cancel calls; the worker tasks to cancel with them (those of a batch with no call left)."""
        by_prefix: dict[str, list[int]] = {}
        for job_id in calls:
            prefix, _, index = job_id.rpartition(SEPARATOR)
            by_prefix.setdefault(prefix, []).append(int(index))
        tasks = []
        for prefix, indices in by_prefix.items():
            with self.lock:
                batch = self._batches.get(prefix)
                ended = set(self._tasks_ended)
            if batch is None:
                continue
            command = cancel_command(batch.directory, indices, batch.width)
            self.backend.transport.run(command).check(BackendUnavailableError, "cancelling calls")
            if batch.finished | set(indices) >= set(range(batch.calls)):
                tasks += [t for t in batch.tasks if t not in ended]
        return tasks

    def requeue(self, job_id: str) -> bool:
        """Put the ended call ``job_id`` back in its batch's queue, for a worker to run it again; False
        when its batch is no longer followed here (every call of it had ended: cleaned, or adopted)."""
        prefix, _, index = job_id.rpartition(SEPARATOR)
        with self._reading:
            with self.lock:
                batch = self._batches.get(prefix)
            if batch is None or batch.template is None:
                return False
            command = ["sh", "-c", REQUEUE, "sh", batch.directory, f"{int(index):0{batch.width}d}"]
            if self.backend.transport.run(command).returncode != 0:
                return False
            with self.lock:
                batch.requeued(int(index))
                self._ran_in.pop(job_id, None)
            self._unfinished.track(prefix, [int(index)])
        self._write_record(batch, new=False)
        return True

    def knows(self, job_id: str) -> bool:
        """Whether the call's batch is followed here (adopted from its record if need be), or was
        until all its calls ended (its record may be gone with its directory)."""
        prefix = job_id.rpartition(SEPARATOR)[0]
        with self.lock:
            if prefix in self._ended_batches:
                return True
        self.tasks_to_ask([job_id])
        with self.lock:
            return prefix in self._batches or prefix in self._ended_batches

    def scheduler_job(self, job_id: str) -> str:
        """The worker task that claimed the call ``job_id`` or, before that, its batch's first."""
        with self.lock:
            batch = self._batches.get(job_id.rpartition(SEPARATOR)[0])
            return self._ran_in.get(job_id) or (batch.tasks[0] if batch else job_id)

    def _relaunch(self, batch: WorkerBatch, by_index: Mapping[int, JobStatus], claims: int) -> dict[int, JobStatus]:
        """Start new workers for the calls left; if the scheduler refuses, those calls fail (their statuses).

        A refusal concerns this batch only: raised, it would fail the poll of every job of the session.
        """
        assert batch.template is not None
        unclaimed = [index for index, status in by_index.items() if status.state is JobState.PENDING]
        size = min(len(unclaimed), batch.size)
        try:
            _, new = self.backend.launch_workers([batch.template], batch.directory, size, batch.launches)
        except ClustrixError as exc:
            self.log.error(
                "workers ended with calls left, and starting more failed", batch=batch.directory, error=str(exc)
            )
            failed = JobStatus(
                JobState.FAILED, reason=f"{NO_WORKER_RAN}: its workers ended, and starting more failed: {exc}"
            )
            batch.finished |= set(unclaimed)
            return dict.fromkeys(unclaimed, failed)
        batch.relaunched(new, claims)
        self._write_record(batch, new=False)
        self.log.warning("workers ended with calls left: started more", batch=batch.directory, workers=size)
        return {}

    def _end_idle(self, batch: WorkerBatch, end: Callable[[Sequence[str]], None], idle: Sequence[str]) -> None:
        """Workers with nothing left to claim are not needed: ``end`` them (cancel, or retire)."""
        try:
            end(idle)
        except BackendUnavailableError as exc:
            # They start, find nothing to claim and end: only their scheduling is wasted.
            self.log.warning("could not cancel idle workers", batch=batch.directory, error=str(exc))

    def _clean(self, prefix: str, batch: WorkerBatch, by_index: Mapping[int, JobStatus]) -> None:
        """Forget a batch whose calls all ended; remove its directory and record by the profile's policy."""
        succeeded = self._unfinished.ended(prefix, by_index)
        if succeeded is None:
            return
        with self.lock:
            del self._batches[prefix]
            self._ended_batches[prefix] = None
            while len(self._ended_batches) > ENDED_BATCHES_KEPT:
                del self._ended_batches[next(iter(self._ended_batches))]
            left = [t for t in batch.tasks if t not in self._tasks_ended]
        self._end_idle(batch, self.backend.retire_workers, left)
        if self.backend.config.should_clean(succeeded):
            self.backend.transport.remove_trees([batch.directory])
            self.backend.transport.remove_trees([record_directory(self.backend.workdir, prefix)])

    def _write_record(self, batch: WorkerBatch, new: bool) -> None:
        """Write the batch's record; ``new``: in a directory of its own made now (its name is the
        batch's scheduler id: guessable, so one already there is someone else's)."""
        record = record_directory(self.backend.workdir, batch.prefix)
        if new:
            self.backend.transport.make_dirs([record], 0o700)
        self.backend.transport.write_files({f"{record}/batch.json": batch.record()}, 0o600)

    def _adopt(self, prefix: str) -> None:
        """Follow a batch another client submitted, from its record (for ``clustrix.attach``)."""
        try:
            data = self.backend.transport.read_file(f"{record_directory(self.backend.workdir, prefix)}/batch.json")
        except FileNotFoundError:
            return
        try:
            batch = WorkerBatch.from_record(data)
        except (ValueError, TypeError) as exc:
            self.log.error("ignoring an unreadable worker batch record", prefix=prefix, error=str(exc))
            return
        # The record decides what this client removes and cancels: it must be the record of this
        # batch, of a directory this client would have made.
        expected = re.fullmatch(rf"{re.escape(self.backend.workdir)}/batch-[0-9a-f]{{32}}", batch.directory)
        if batch.prefix != prefix or not expected or not all(_TASK.fullmatch(t) for t in batch.tasks):
            self.log.error("ignoring a worker batch record that is not this batch's", prefix=prefix)
            return
        with self.lock:
            if prefix in self._batches:
                return
            self._batches[prefix] = batch
            # Cleaned by this client too once every call of it ended (when it follows them all).
            self._unfinished.track(prefix, range(batch.calls))
        self.backend.follow_workers(batch.directory, batch.tasks)

    def _workers_said(self, batch: WorkerBatch) -> str:
        try:
            tail = self.backend.transport.read_file(
                self.backend.worker_output(batch.directory), tail=WORKER_OUTPUT_TAIL
            )
        except FileNotFoundError:
            return ""
        said = tail.decode(errors="replace").strip()
        return f"; the workers' output: {said}" if said else ""
