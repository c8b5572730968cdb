"""The client's side of workers that claim calls: a batch's files, and each call's state from them.

A ``map`` on a batch scheduler runs as one array of worker tasks sharing one batch
directory (the runner's ``work`` is the other side). A call's state is then not any
task's state: it is read from the batch directory (claimed by which worker, ended how,
cancelled) together with the state of the worker that claimed it. One listing command
per poll reads every batch's files; the scheduler is asked about worker tasks only.

Call ids are ``<first task's array id>#<index>``: the scheduler never sees them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

import attrs

from clustrix import runner
from clustrix.backend import StagedJob
from clustrix.state import JobState, JobStatus

SEPARATOR = "#"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\[\]-]")
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

_KILL_STATES = frozenset(
    {JobState.TIMEOUT, JobState.OUT_OF_MEMORY, JobState.CANCELLED, JobState.NODE_FAIL, JobState.PREEMPTED}
)


def call_id(prefix: str, index: int) -> str:
    return f"{prefix}{SEPARATOR}{index}"


def is_call_id(job_id: str) -> bool:
    return SEPARATOR in job_id


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
    drained: bool = False
    finished: set[int] = attrs.field(factory=set)

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
        self.drained = False

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
        if not unclaimed and not self.drained:
            drain = [t for t in self.tasks if t in tasks and tasks[t].state is JobState.PENDING]
            self.drained = True
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
