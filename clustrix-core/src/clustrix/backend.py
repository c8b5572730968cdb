"""The backend interface every scheduler plugin implements, and the job script pieces they share."""

from __future__ import annotations

import abc
import functools
import importlib.resources
import os
import shlex
import sys
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from clustrix import convert
from clustrix.config import ClusterConfig
from clustrix.spec import JobSpec
from clustrix.state import JobState, JobStatus
from clustrix.transport import Transport

# The far-side runner. A backend writes it beside what runs it (a job's directory, a batch's), not
# into every call's directory: a map's calls are run by its workers' copy.
RUNNER_SOURCE = importlib.resources.files("clustrix").joinpath("runner.py").read_bytes()

if TYPE_CHECKING:
    from clustrix.records import Allocation, JobMetrics


@attrs.frozen
class StagedJob:
    """A call whose directory is written on the far side and is ready to submit."""

    key: str
    directory: str
    spec: JobSpec
    # Scheduler ids of unfinished jobs this one may start only after, once they completed.
    after: tuple[str, ...] = ()


class Leftovers:
    """Files a backend removes by the cleanup policy once every job they serve has ended.

    A group (a batch directory, a worker batch) is tracked with its members (job ids, call
    indices); ``ended`` is told their statuses and answers, once the last member ended,
    whether they all COMPLETED. A member tracked again (its call runs again) counts by its
    new end.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[Hashable]] = {}
        self._failed: dict[str, set[Hashable]] = {}

    def track(self, group: str, members: Iterable[Hashable]) -> None:
        members = set(members)
        with self._lock:
            self._waiting.setdefault(group, set()).update(members)
            self._failed.get(group, set()).difference_update(members)

    def groups(self) -> list[str]:
        with self._lock:
            return list(self._waiting)

    def ended(self, group: str, statuses: Mapping[Any, JobStatus]) -> bool | None:
        """Record the members of ``group`` that ended; None while some have not, else all COMPLETED."""
        with self._lock:
            waiting = self._waiting.get(group)
            if waiting is None:
                return None
            for member in [m for m in waiting if m in statuses and statuses[m].state.finished]:
                waiting.discard(member)
                if statuses[member].state is not JobState.COMPLETED:
                    self._failed.setdefault(group, set()).add(member)
            if waiting:
                return None
            del self._waiting[group]
            return not self._failed.pop(group, None)


class Backend(abc.ABC):
    """Submits staged jobs, reports their status and cancels them, all through ``self.transport``.

    ``submit`` gets a whole batch (one ``map``) at once, so schedulers with job arrays
    submit it in one command; ``poll`` gets every job the monitor still waits for, so
    it should ask the scheduler once, however many there are.
    """

    # Profile keys this backend adds, each with its converter (which raises ConfigError).
    options: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}
    default_transport: ClassVar[str] = "local"
    # Whether a job directory outlives its job, so a call that checkpointed there can resume
    # in a job submitted again with the same directory.
    resumes_checkpoints: ClassVar[bool] = True
    # Whether a call asking for several tasks (``Resources.tasks``) runs once on each of them; the
    # session refuses such calls for a backend that would run them once.
    runs_tasks: ClassVar[bool] = False

    def __init__(self, config: ClusterConfig, transport: Transport) -> None:
        self.config = config
        self.transport = transport
        # Set by the session: a backend that learns of changes by itself (a watch) calls it so
        # the monitor polls now instead of at the end of its interval.
        self.on_change: Callable[[], None] | None = None

    @functools.cached_property
    def workdir(self) -> str:
        """The absolute directory on the far side that holds one directory per job."""
        return self.transport.resolve(self.config.workdir)

    def job_directory(self, key: str) -> str:
        return f"{self.workdir}/{key}"

    @abc.abstractmethod
    def submit(self, jobs: Sequence[StagedJob], chunksize: int | None = None) -> list[str]:
        """Submit the batch; return each job's id, in order. Raise SubmissionError.

        ``chunksize`` asks for that many consecutive calls per scheduler task (the runner
        runs them in order); those calls may then share one id. None leaves it to the
        backend (a batch scheduler's workers claim calls). A backend with no use for it
        may ignore it. A job's ``after`` ids must have COMPLETED before it starts;
        if one ends otherwise the job must end CANCELLED without running. A backend that
        cannot wait raises SubmissionError for such jobs.
        """

    def rerun(self, job_id: str, job: StagedJob) -> str:
        """Run the call of ``job``, which ended as ``job_id``, again from its directory (a checkpoint
        to resume, a retry); the id it runs under now.

        A job of its own by default; a backend whose workers claim calls puts a call of theirs
        back in its batch's queue instead, under the same id.
        """
        return self.submit([job], chunksize=1)[0]

    @abc.abstractmethod
    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """The status of each job; a job the scheduler no longer knows is ``JobState.UNKNOWN``."""

    def query_would_wait(self) -> bool:
        """Whether the scheduler would slow a status query asked now (OpenPBS's qstat sleeps 0.2 s
        when the same user's last one ended in the same wall-clock second). A poll then answers
        without asking it, from what jobs left on disk, and the monitor keeps its interval: it backs
        off by the queries that reach the scheduler."""
        return False

    @abc.abstractmethod
    def cancel(self, job_ids: Sequence[str]) -> None:
        """Ask the scheduler to end these jobs; finished ones are ignored."""

    @abc.abstractmethod
    def check(self) -> str:
        """Probe the scheduler; a one-line description, or BackendUnavailableError."""

    def follow(self, job_ids: Sequence[str]) -> None:  # noqa: B027 - most backends ask by id alone
        """Jobs another client submitted that this one now collects (``clustrix.attach``): a backend
        that keeps state per job of its own takes these on as its own."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing open
        """Release what the backend holds; jobs already submitted keep running."""

    # The validator's questions (clustrix.validation): what the scheduler itself says of a job,
    # independently of what the runner recorded. None: this backend cannot say.

    def job_in_queue(self, job_id: str) -> bool | None:
        """Whether the scheduler lists the job now (queued, running, or its record of the end)."""
        return None

    def job_allocation(self, job_id: str, meta: Mapping[str, Any] | None) -> Allocation | None:
        """What the scheduler granted the job (cores, memory, time limit, queue, nodes), as it
        reports it; asked after the job ended, while the scheduler still remembers it. ``meta``
        is the runner's record of the call (its meta.json; None where it left none)."""
        return None

    def job_metrics(self, job_id: str, meta: Mapping[str, Any] | None) -> JobMetrics | None:
        """The scheduler's accounting of the job (times, exit code, nodes, peak memory), if it
        keeps one; without it the validator reads the runner's own record, ``meta``."""
        return None

    def python_for(self, spec: JobSpec) -> str:
        """The interpreter a job runs under: the spec's, else ours here, else ``python3`` there."""
        return spec.python or (sys.executable if self.transport.is_local else "python3")

    def setup_lines(self, spec: JobSpec) -> list[str]:
        """Shell lines that set a job's environment and run its setup, before the runner."""
        lines = []
        if spec.checkpointable:
            # The runner times the call's checkpoint from the job's start; the shell outlives a
            # scheduler's TERM (preemption, the time limit) so the runner can checkpoint on it.
            lines += ["export CLUSTRIX_JOB_START=$(date +%s)", "trap : TERM"]
        if self.transport.is_local and spec.python is None:
            # The same interpreter on the same machine: let it import what the caller can.
            paths = [p for p in sys.path if p and os.path.isdir(p)]
            lines.append(f"export PYTHONPATH={shlex.quote(os.pathsep.join(paths))}${{PYTHONPATH:+:$PYTHONPATH}}")
        for name, value in spec.env:
            lines.append(f"export {convert.env_name(name)}={shlex.quote(str(value))}")
        if spec.parallel:
            lines.append("export CLUSTRIX_PARALLEL=1")
        lines.extend(spec.setup)
        return lines

    def write_runner(self, directories: Sequence[str]) -> None:
        """Write ``runner.py`` into each of ``directories``: what ``runner_line`` runs."""
        self.transport.write_files({f"{directory}/runner.py": RUNNER_SOURCE for directory in directories}, 0o600)

    def runner_line(self, jobs: Sequence[StagedJob]) -> str:
        """The shell line that runs the calls of ``jobs`` in order, in one process, with the
        ``runner.py`` the backend wrote into the first job's directory (``write_runner``).

        Every job in ``jobs`` shares one spec's settings (one batch); this is how several
        calls share one scheduler task.
        """
        runner = f"{jobs[0].directory}/runner.py"
        return shlex.join([self.python_for(jobs[0].spec), runner, *(job.directory for job in jobs)])
