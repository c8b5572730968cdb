"""The base of every batch scheduler (Slurm, SGE, PBS, a third party's): all but the scheduler's words.

A batch scheduler takes a job script, queues it, runs it, and answers questions about it
through commands. What differs between schedulers is only vocabulary, so this base owns
the machinery and a scheduler plugin declares data and writes small pieces:

- data: ``scheduler`` (its name in messages), ``directive_prefix`` (``#SBATCH``), the shell
  expressions for the job's id, an array task's id and index, and the cores it was given,
  ``first_array_index``, and the words its commands use for an unknown job, an already
  finished one, and an unreachable server;
- pieces: ``resource_options``, ``array_options``, ``dependency_options``,
  ``submit_command`` + ``parse_job_id``, ``task_id`` + ``base_id``, ``query`` (one status
  query for many jobs), ``cancel_command``, ``check_command``, ``hold_option`` and
  ``release_command`` (for jobs that wait for a worker's call), and optionally
  ``max_array_size``, ``command_env``, and ``task_launch`` with ``runs_tasks`` (to run a
  call once on every task of a multi-node or multi-task job).

The base owns: rendering the script (directives, ids, environment, setup, the runner),
one job for one call, and for a batch of several ONE array of workers that claim its
calls (``clustrix.workers``; at most one task per call, cancelled once nothing is left
to claim, relaunched if all died with calls left; calls on several tasks each get a job of
their own) or, when the caller fixes a
``chunksize``, ONE array of static chunks (split only past the scheduler's maximum)
read from a tasks file, all-or-nothing
submission, one status query per poll for every job, jobs the scheduler no longer knows
(``UNKNOWN``: the core then asks the runner's record), a running job never sent back to
pending by a lagging answer, batch directories cleaned by policy, and cancel of many
ids in one command. Every value that reaches a script or a command line is either
checked where it enters (``Resources``, profile converters) or made safe here: job
names are reduced to ``[A-Za-z0-9_.-]``, paths are quoted or passed as arguments.
"""

from __future__ import annotations

import abc
import datetime
import re
import shlex
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import ClassVar

import attrs

from clustrix import endrecord, runner, workers
from clustrix.backend import RUNNER_SOURCE, Backend, Leftovers, StagedJob
from clustrix.errors import BackendUnavailableError, SubmissionError
from clustrix.held import HeldJobs
from clustrix.ledger import Ledger
from clustrix.log import get_logger
from clustrix.resources import Resources
from clustrix.spec import JobSpec
from clustrix.state import JobState, JobStatus
from clustrix.transport import CommandResult

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# A worker task asks for this many times a call's time limit: after one call that used its
# whole limit it could take no other (a call starts only if its full limit still fits).
WORKER_TIME_FACTOR = 2
# Worker tasks of one map at most: they claim calls until none is left, so a map of 10,000 calls
# needs no 10,000 tasks in the queue, which the scheduler would list in every poll.
MAX_WORKERS = 1000


@attrs.frozen
class JobScript:
    """A batch job script, part by part in the order it runs; ``render`` writes it.

    Every script the base submits (one call, an array of static chunks, an array of workers) is
    one of these, so one place shows what a scheduler's script looks like.
    """

    # Directive lines (resources, array, dependencies, the user's extras), prefix included.
    directives: Sequence[str]
    # The shell expression of the id the call sees as CLUSTRIX_JOB_ID.
    job_id: str
    # ``export`` lines: cores, time limits, what a call on several tasks needs.
    exports: Sequence[str]
    # Where the task finds its job directories ("$1"...), before the setup lines run.
    arguments: Sequence[str]
    # What leaves the job's end record (clustrix.endrecord).
    record: Sequence[str]
    setup: Sequence[str]
    # The runner's command line.
    launch: str

    def render(self) -> bytes:
        lines = [
            "#!/bin/bash",
            *self.directives,
            f"export CLUSTRIX_JOB_ID={self.job_id}",
            *self.exports,
            *self.arguments,
            *self.record,
            *self.setup,
            self.launch,
        ]
        return ("\n".join(lines) + "\n").encode()


class BatchBackend(Backend):
    """A scheduler driven through its command-line tools; job ids are the scheduler's own."""

    scheduler: ClassVar[str]
    directive_prefix: ClassVar[str]
    # Shell expressions, evaluated in the job script: the id of a single job, of an array
    # task (as ``task_id`` writes it), the array task's index, and the cores granted.
    job_id_expression: ClassVar[str]
    task_id_expression: ClassVar[str]
    task_index_variable: ClassVar[str]
    cores_variable: ClassVar[str]
    first_array_index: ClassVar[int] = 0
    # How long a job name may be in this scheduler's directives.
    name_limit: ClassVar[int] = 100
    # Words in a command's output meaning: no such job / it already ended / the server is unreachable.
    unknown_job_words: ClassVar[tuple[str, ...]] = ()
    finished_job_words: ClassVar[tuple[str, ...]] = ()
    unreachable_words: ClassVar[tuple[str, ...]] = ()
    # Whether a map runs as workers that claim calls (else as static chunks, one call per task by
    # default). A scheduler that claims calls must also be able to hold a job (``hold_option``)
    # and release it (``release_command``): a job waiting for a call has no scheduler id to name.
    claims_calls: ClassVar[bool] = True
    hold_option: ClassVar[str] = ""
    # Whether ``dependency_options`` waits for the upstream jobs to COMPLETE (Slurm's afterok).
    # Without it (SGE's -hold_jid starts a job however its upstream ended) every dependant is
    # submitted held too, and released like a job that waits for a worker's call.
    has_afterok: ClassVar[bool] = True
    # The unit, in seconds, the scheduler counts time limits in. A limit that is not a whole
    # number of them is rounded up by the scheduler; the runner holds the call to the exact limit.
    time_granularity: ClassVar[int] = 1

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Guards a plugin's own caches (limits asked once, ids learned from the jobs).
        self.lock = threading.Lock()
        # What is known of each job: its resources (not its spec: that holds the function and its
        # arguments), directories, worker tasks, cancels, who was seen running.
        self.ledger = Ledger()
        # Batch directories (array scripts, tasks files, the scheduler's own output) and their
        # unfinished job ids; each is cleaned by the profile's policy once all of its jobs have ended.
        self._batches = Leftovers()
        self.pool = workers.WorkerPool(self)
        # Jobs submitted held until what they wait for completed.
        self.held = HeldJobs()
        self.log = get_logger(cluster=self.config.label)

    # -- what a scheduler writes ---------------------------------------------------------

    @abc.abstractmethod
    def resource_options(self, spec: JobSpec, name: str) -> list[str]:
        """The directive options (without the prefix) for ``spec``'s resources, under job ``name``."""

    @abc.abstractmethod
    def array_options(self, first: int, last: int) -> list[str]:
        """The directive options that make the script an array of tasks ``first``..``last``."""

    @abc.abstractmethod
    def dependency_options(self, after: Sequence[str]) -> list[str]:
        """Directive options: start only once every job in ``after`` completed; die if one fails."""

    @abc.abstractmethod
    def submit_command(self, script: str, stdout: str, stderr: str) -> list[str]:
        """The command that submits ``script``, with the scheduler's own output files."""

    @abc.abstractmethod
    def parse_job_id(self, stdout: str) -> str | None:
        """The new job's (or array's) id from the submit command's output; None if there is none."""

    @abc.abstractmethod
    def task_id(self, array_id: str, index: int) -> str:
        """The id of one task of an array, as ``query`` reports it and ``cancel_command`` takes it."""

    @abc.abstractmethod
    def base_id(self, job_id: str) -> str:
        """The job (or array) a job id belongs to: itself, or the array of a task."""

    @abc.abstractmethod
    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """The status of those of ``job_ids`` the scheduler knows, with as few commands as it takes.

        Leave out what it does not know; the base reports those as UNKNOWN. Use ``run_query``.
        """

    @abc.abstractmethod
    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        """The command that cancels all of ``job_ids`` at once."""

    @abc.abstractmethod
    def check_command(self) -> list[str]:
        """A cheap command that succeeds when the scheduler answers."""

    def task_launch(self, spec: JobSpec) -> tuple[list[str], list[str]]:
        """How a job runs its call once per task (needed with ``runs_tasks``).

        The shell lines that export the job-wide ``CLUSTRIX_WORLD_SIZE`` and ``CLUSTRIX_NODES``
        (node names, comma-separated), and the command put before the runner that starts it on
        every task with ``CLUSTRIX_RANK``, ``CLUSTRIX_LOCAL_RANK`` and ``CLUSTRIX_MAIN_ADDRESS``
        (rank 0's node) set for that task.
        """
        raise NotImplementedError(f"{self.scheduler}: task_launch")

    def release_command(self, job_ids: Sequence[str]) -> list[str]:
        """The command that lets held jobs (submitted with ``hold_option``) start; needed when ``claims_calls``."""
        raise NotImplementedError(f"{self.scheduler}: release_command")

    def max_array_size(self) -> int | None:
        """How many tasks one array may have here; None when there is no limit worth knowing."""
        return None

    def command_env(self) -> Mapping[str, str] | None:
        """Environment every scheduler command needs (e.g. which cluster's configuration)."""
        return None

    # -- talking to the scheduler ----------------------------------------------------------

    def run(self, argv: Sequence[str]) -> CommandResult:
        return self.transport.run(argv, env=self.command_env())

    def run_query(self, argv: Sequence[str], what: str) -> str:
        """stdout of a query; a job the scheduler has forgotten is an empty answer, other failures raise."""
        result = self.run(argv)
        if not result.ok and any(word in result.stderr for word in self.unknown_job_words):
            return ""
        return result.check(BackendUnavailableError, what).stdout

    def end_records(self, job_ids: Sequence[str]) -> dict[str, endrecord.EndRecord]:
        """What each job left in its directories (clustrix.endrecord), with one command for all;
        jobs whose directories are not known are left out. A task running several calls speaks
        by its first directory's record, with whether the runner returned every call and the
        first error one raised."""
        dirs = {job_id: ds for job_id in job_ids if (ds := self.ledger.directories(job_id))}
        flat = [d for ds in dirs.values() for d in ds]
        if not flat:
            return {}
        result = self.run(endrecord.read_command(flat))
        lines = iter(result.check(BackendUnavailableError, "reading the jobs' end records").stdout.splitlines())
        records = {}
        for job_id, ds in dirs.items():
            calls = [endrecord.parse(next(lines, "")) for _ in ds]
            returned = [call.runner_returned for call in calls]
            records[job_id] = attrs.evolve(
                calls[0],
                runner_returned=None if returned[-1] is None else all(r is True for r in returned),
                error=next((call.error for call in calls if call.error), None),
            )
        return records

    def check(self) -> str:
        result = self.run(self.check_command()).check(BackendUnavailableError, f"asking {self.scheduler}")
        return (result.stdout.strip() or f"{self.scheduler} answers").splitlines()[-1]

    def resources_of(self, job_id: str) -> Resources | None:
        """What the job (or its array) asked for, when this client submitted it."""
        return self.ledger.resources(self.base_id(job_id))

    def was_cancelled(self, job_id: str) -> bool:
        """Whether this client cancelled the job (or its array): a job deleted before it started
        leaves no record of why, and some schedulers record a cancelled job's end as a success."""
        return self.ledger.was_cancelled(job_id, self.base_id(job_id))

    def scheduler_job(self, job_id: str) -> str:
        """The scheduler's id for what runs ``job_id``.

        For a call run by workers: the worker task that claimed it, or before that their first.
        """
        return self.pool.scheduler_job(job_id)

    # -- submission -------------------------------------------------------------------------

    def rerun(self, job_id: str, job: StagedJob) -> str:
        """A call of a map's workers goes back to its batch's queue while the batch is followed."""
        if workers.is_call_id(job_id) and self.pool.requeue(job_id):
            return job_id
        return super().rerun(job_id, job)

    def submit(self, jobs: Sequence[StagedJob], chunksize: int | None = None) -> list[str]:
        ids = self._submit(jobs, chunksize)
        for job, job_id in zip(jobs, ids, strict=True):
            if not workers.is_call_id(job_id):
                self.ledger.runs(job_id, job.directory)
        return ids

    def _submit(self, jobs: Sequence[StagedJob], chunksize: int | None) -> list[str]:
        if self._on_tasks(jobs[0].spec):
            return self._submit_each(jobs)
        if chunksize is None and len(jobs) > 1 and self.claims_calls:
            return self.pool.submit(jobs, min(len(jobs), self.max_array_size() or len(jobs), MAX_WORKERS))
        chunksize = chunksize or 1
        chunks = [list(jobs[i : i + chunksize]) for i in range(0, len(jobs), chunksize)]
        if len(chunks) == 1:
            job_id = self._submit_single(chunks[0])
            return [job_id] * len(chunks[0])
        batch_dir = f"{self.workdir}/batch-{uuid.uuid4().hex}"
        self.transport.make_dirs([batch_dir], 0o700)
        ids: list[str] = []
        submitted: list[str] = []
        per_array = self.max_array_size() or len(chunks)
        try:
            for number, start in enumerate(range(0, len(chunks), per_array)):
                group = chunks[start : start + per_array]
                array_id = self._submit_array(group, batch_dir, number)
                submitted.append(array_id)
                first = self.first_array_index
                ids += [self.task_id(array_id, first + index) for index, chunk in enumerate(group) for _ in chunk]
        except BaseException:
            # All of the batch or none of it: the caller cleans the job directories.
            if submitted:
                self.cancel(submitted)
            self.transport.remove_trees([batch_dir])
            raise
        self._batches.track(batch_dir, ids)
        return ids

    def _on_tasks(self, spec: JobSpec) -> bool:
        """Whether the call runs once per task (the session refuses such calls where not ``runs_tasks``)."""
        return self.runs_tasks and spec.resources.tasks > 1

    def _submit_each(self, jobs: Sequence[StagedJob]) -> list[str]:
        """One job per call, all or none: a call on several tasks launches its own tasks, so it
        can be neither a worker's call nor a chunk's."""
        ids: list[str] = []
        try:
            for job in jobs:
                ids.append(self._submit_single([job]))
        except BaseException:
            if ids:
                self.cancel(ids)
            raise
        return ids

    def launch_workers(
        self, jobs: Sequence[StagedJob], batch_dir: str, size: int, number: int
    ) -> tuple[str, list[str]]:
        """Submit an array of ``size`` workers for the batch; its id and its tasks' ids."""
        spec = jobs[0].spec
        call_time = spec.resources.time
        if call_time:
            worker_time = datetime.timedelta(seconds=WORKER_TIME_FACTOR * call_time)
            worker_resources = attrs.evolve(spec.resources, time=worker_time)
            jobs = [attrs.evolve(job, spec=attrs.evolve(spec, resources=worker_resources)) for job in jobs]
        first = self.first_array_index
        script = JobScript(
            directives=self.directives(jobs, self.array_options(first, first + size - 1)),
            job_id=self.task_id_expression,
            exports=[
                self._cores_line(spec),
                *([f"export CLUSTRIX_CALL_TIME={call_time}"] if call_time else []),
                *([f"export CLUSTRIX_WORKER_TIME={WORKER_TIME_FACTOR * call_time}"] if call_time else []),
            ],
            # "$1" is a directory of the task's own, as in an array task (its first job's): where
            # a scheduler's setup lines keep the task's record. Not mkdir -p: a worker that starts
            # after its batch ended and was cleaned (its cancel came too late) must not make the
            # batch directory again; it has nothing to claim and ends.
            arguments=[
                f"set -- {shlex.quote(self.worker_directory(batch_dir, number, ''))}$(({self.task_index_variable}))",
                'mkdir "$1" 2>/dev/null || exit 0',
            ],
            record=endrecord.script_lines('"$1"', self.job_id_expression),
            setup=self.setup_lines(spec),
            launch=shlex.join([self.python_for(spec), f"{batch_dir}/runner.py", "--worker", batch_dir])
            + ' "$CLUSTRIX_JOB_ID"',
        )
        out = f"{batch_dir}/{self.scheduler.lower()}-workers-{number}.out"
        array_id = self._submit_script(f"{batch_dir}/workers-{number}.sh", script, spec, out, out, jobs)
        tasks = [self.task_id(array_id, first + index) for index in range(size)]
        for index, task in enumerate(tasks):
            self.ledger.worker(task, self.worker_directory(batch_dir, number, first + index))
        return array_id, tasks

    def retire_workers(self, tasks: Sequence[str]) -> None:
        """Cancel the workers not seen ended. The idle ones were cancelled once every call was
        claimed, but a task that was just starting then may still be queued: started after its
        batch directory is gone, it would fail to open its output (SGE then holds it in error
        state for ever). A scheduler that cannot cancel one task of an array overrides this."""
        self.ledger.forget(tasks)
        if tasks:
            self.cancel(list(tasks))

    def follow_workers(self, batch_dir: str, tasks: Sequence[str]) -> None:
        """The worker tasks of another client's batch, launch after launch in index order (as
        ``launch_workers`` returned them): each one's own directory goes into the ledger."""
        arrays = list(dict.fromkeys(self.base_id(task) for task in tasks))
        seen: dict[str, int] = {}
        for task in tasks:
            number = arrays.index(self.base_id(task))
            index = self.first_array_index + seen.setdefault(number, 0)
            seen[number] += 1
            self.ledger.worker(task, self.worker_directory(batch_dir, number, index))

    def worker_directory(self, batch_dir: str, number: int, index: int | str) -> str:
        """The own directory of the worker task ``index`` of launch ``number`` ("$1" in its script)."""
        return f"{batch_dir}/task-{number}-{index}"

    def worker_output(self, batch_dir: str) -> str:
        return f"{batch_dir}/{self.scheduler.lower()}-workers-0.out"

    def job_name(self, spec: JobSpec) -> str:
        """``spec.name`` reduced to what every scheduler accepts in a name, and to its length limit."""
        return _NAME_UNSAFE.sub("_", spec.name)[: self.name_limit] or "clustrix"

    def directives(self, jobs: Sequence[StagedJob], options: Sequence[str] = ()) -> list[str]:
        """The script's directive lines: resources, ``options``, dependencies, the user's extras.

        Calls run by workers have no scheduler id to depend on: a job waiting for one is
        submitted held, and the poll releases it (see ``_settle_held``); so is every dependant
        of a scheduler without ``has_afterok``.
        """
        spec = jobs[0].spec
        after = list(dict.fromkeys(upstream for job in jobs for upstream in job.after))
        plain = [job_id for job_id in after if not workers.is_call_id(job_id)]
        lines = [f"{self.directive_prefix} {option}" for option in self.resource_options(spec, self.job_name(spec))]
        lines += [f"{self.directive_prefix} {option}" for option in options]
        if plain:
            lines += [f"{self.directive_prefix} {option}" for option in self.dependency_options(plain)]
        if len(plain) < len(after) or (plain and not self.has_afterok):
            lines.append(f"{self.directive_prefix} {self.hold_option}")
        prefix = self.directive_prefix
        lines += [extra if extra.startswith(prefix) else f"{prefix} {extra}" for extra in spec.resources.extra]
        return lines

    def _runner_time_limit(self, resources: Resources) -> int | None:
        """The time limit the runner holds the calls to itself (runner.run_limited): the job's,
        where the scheduler would round it up."""
        limit = resources.time
        return limit if limit and limit % self.time_granularity else None

    def _time_limit_lines(self, resources: Resources) -> list[str]:
        limit = self._runner_time_limit(resources)
        return [f"export CLUSTRIX_TIME_LIMIT={limit}"] if limit else []

    def _cores_line(self, spec: JobSpec) -> str:
        return f"export CLUSTRIX_CORES=${{{self.cores_variable}:-{spec.resources.cores}}}"

    def _submit_single(self, chunk: list[StagedJob]) -> str:
        directory = chunk[0].directory
        spec = chunk[0].spec
        exports, run = [], self.runner_line(chunk)
        if self._on_tasks(spec):
            exports, launcher = self.task_launch(spec)
            run = f"{shlex.join(launcher)} {run}"
        script = JobScript(
            directives=self.directives(chunk),
            job_id=self.job_id_expression,
            exports=[self._cores_line(spec), *self._time_limit_lines(spec.resources), *exports],
            arguments=[],
            record=endrecord.script_lines(shlex.quote(directory), self.job_id_expression),
            setup=self.setup_lines(spec),
            launch=run,
        )
        self.write_runner([directory])
        return self._submit_script(
            f"{directory}/job.sh", script, spec, f"{directory}/stdout", f"{directory}/stderr", chunk
        )

    def _submit_array(self, group: list[list[StagedJob]], batch_dir: str, number: int) -> str:
        first = group[0][0]
        tasks = f"{batch_dir}/tasks-{number}"
        line = f"$(({self.task_index_variable} - {self.first_array_index} + 1))"
        jobs = [job for chunk in group for job in chunk]
        script = JobScript(
            directives=self.directives(
                jobs, self.array_options(self.first_array_index, self.first_array_index + len(group) - 1)
            ),
            job_id=self.task_id_expression,
            exports=[self._cores_line(first.spec), *self._time_limit_lines(first.spec.resources)],
            arguments=[
                # This task's job directories, shell-quoted on its line of the tasks file.
                f'eval "set -- $(sed -n "{line}p" {shlex.quote(tasks)})"',
                # Setup's output belongs with the task's first call, where the client reads stderr.
                'exec >>"$1/stdout" 2>>"$1/stderr"',
            ],
            record=endrecord.script_lines('"$1"', self.job_id_expression),
            setup=self.setup_lines(first.spec),
            launch=f'{shlex.join([self.python_for(first.spec), f"{batch_dir}/runner.py"])} "$@"',
        )
        task_lines = "".join(" ".join(shlex.quote(job.directory) for job in chunk) + "\n" for chunk in group)
        self.transport.write_files({tasks: task_lines.encode(), f"{batch_dir}/runner.py": RUNNER_SOURCE}, 0o600)
        # One file for the whole array: only what fails before the script's redirect lands there.
        out = f"{batch_dir}/{self.scheduler.lower()}-{number}.out"
        return self._submit_script(f"{batch_dir}/array-{number}.sh", script, first.spec, out, out, jobs)

    def _submit_script(
        self, path: str, script: JobScript, spec: JobSpec, stdout: str, stderr: str, jobs: Sequence[StagedJob]
    ) -> str:
        """Write ``script`` at ``path`` and submit it; the id the scheduler gave it."""
        self.transport.write_files({path: script.render()}, 0o700)
        command = self.submit_command(path, stdout, stderr)
        result = self.run(command)
        if not result.ok:
            if any(word in result.words for word in self.unreachable_words):
                raise BackendUnavailableError(
                    f"{self.config.label}: {command[0]} could not reach {self.scheduler}: {result.words}"
                )
            raise SubmissionError(f"{command[0]} refused the job {spec.name!r}", scheduler_output=result.words)
        job_id = self.parse_job_id(result.stdout)
        if not job_id:
            raise SubmissionError(
                f"{command[0]} answered no job id for {spec.name!r}",
                scheduler_output=result.stdout + result.stderr or "(no output)",
            )
        after = {upstream for job in jobs for upstream in job.after}
        waits = after if not self.has_afterok else {upstream for upstream in after if workers.is_call_id(upstream)}
        self.ledger.submitted(self.base_id(job_id), spec.resources)
        if waits:
            self.held.hold(self.base_id(job_id), waits)
        return job_id

    # -- watching and cancelling ---------------------------------------------------------

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        calls, plain = workers.split_calls(job_ids)
        if self.query_would_wait():
            # Only the end records: the next poll asks, once the scheduler would answer at once.
            found, statuses = {}, self._between_queries(plain)
        else:
            tasks = self.pool.tasks_to_ask(calls)
            found = self.query(plain + tasks) if plain or tasks else {}
            unknown = JobStatus(JobState.UNKNOWN, reason=f"{self.scheduler} no longer knows this job")
            statuses = {job_id: self._timed_out_by_the_runner(job_id, found.get(job_id, unknown)) for job_id in plain}
            running = [job_id for job_id, status in statuses.items() if status.state is JobState.RUNNING]
            statuses.update(self._returned(running, statuses))
            statuses.update(self.pool.statuses(calls, found))
        statuses.update(self._settle_held(statuses))
        # Worker tasks are answered in ``found`` only; the calls they run, in ``statuses``.
        self.ledger.seen(found)
        self.ledger.seen(statuses)
        self._clean_batches(statuses)
        return statuses

    def _returned(self, job_ids: Sequence[str], statuses: Mapping[str, JobStatus]) -> dict[str, JobStatus]:
        """COMPLETED now for the jobs of ``job_ids`` whose runner returned every call, whatever the
        scheduler lists: it records a job's end a second or more after its script's (epilogues,
        the execution host's report; SGE lists an ended job for about a second), and the result is
        there already."""
        return {
            job_id: self._runner_returned(statuses[job_id].nodes)
            for job_id, record in self._single_task_records(job_ids).items()
            if record.runner_returned is True
        }

    def _between_queries(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """A poll that does not ask the scheduler (``query_would_wait``): from the end records,
        COMPLETED where the runner returned, RUNNING where the script started and was not seen
        running yet; the rest unchanged."""
        found = {}
        for job_id, record in self._single_task_records(job_ids).items():
            if record.runner_returned is True:
                found[job_id] = self._runner_returned(None)
            elif record.scheduler_id is not None and not self.ledger.seen_running(job_id):
                found[job_id] = JobStatus(JobState.RUNNING, reason="its script started")
        return found

    def _single_task_records(self, job_ids: Sequence[str]) -> dict[str, endrecord.EndRecord]:
        """The end records of the jobs of one task that this client submitted, with one read: a
        call on several tasks waits for the scheduler (rank 0's record does not speak for the
        others), as does a job submitted elsewhere."""
        single = [job_id for job_id in job_ids if (asked := self.resources_of(job_id)) is not None and asked.tasks == 1]
        return self.end_records(single) if single else {}

    def _runner_returned(self, nodes: str | None) -> JobStatus:
        return JobStatus(
            JobState.COMPLETED,
            reason=f"the runner returned ({self.scheduler} is still ending the job)",
            exit_code=0,
            nodes=nodes,
        )

    def _timed_out_by_the_runner(self, job_id: str, status: JobStatus) -> JobStatus:
        """TIMEOUT for a job whose runner held its calls to a limit of its own and killed one."""
        if status.state is not JobState.FAILED or status.exit_code != runner.TIMEOUT_EXIT:
            return status
        resources = self.resources_of(job_id)
        limit = self._runner_time_limit(resources) if resources is not None else None
        return status.timed_out_by_the_runner(limit) if limit else status

    def _settle_held(self, statuses: Mapping[str, JobStatus]) -> dict[str, JobStatus]:
        """Release or cancel held jobs (``HeldJobs.settle``). A cancelled one ends CANCELLED without
        running (its status in this poll says why: the scheduler was asked before the cancel), and
        its calls raise DependencyFailedError."""
        doomed = self.held.settle(statuses, self._release, self._cancel_held)
        return {
            job_id: JobStatus(JobState.CANCELLED, reason=doomed[self.base_id(job_id)])
            for job_id in statuses
            if not workers.is_call_id(job_id) and self.base_id(job_id) in doomed
        }

    def _release(self, job_ids: Sequence[str]) -> bool:
        result = self.run(self.release_command(job_ids))
        if not self._went_through(result):
            self.log.warning("could not release held jobs, trying again next poll", jobs=job_ids, answer=result.words)
            return False
        return True

    def _cancel_held(self, job_ids: Sequence[str]) -> bool:
        try:
            self.cancel(job_ids)
        except BackendUnavailableError as exc:
            self.log.warning("could not cancel held jobs, trying again next poll", jobs=job_ids, error=str(exc))
            return False
        return True

    def _clean_batches(self, statuses: Mapping[str, JobStatus]) -> None:
        for batch_dir in self._batches.groups():
            succeeded = self._batches.ended(batch_dir, statuses)
            if succeeded is not None and self.config.should_clean(succeeded):
                self.transport.remove_trees([batch_dir])

    def cancel(self, job_ids: Sequence[str]) -> None:
        calls, plain = workers.split_calls(job_ids)
        # Calls are cancelled in their batch's files; their worker tasks go like any job.
        job_ids = [*self.pool.cancel(calls), *plain]
        self.ledger.cancelled(job_ids)
        targets = self.cancel_targets(job_ids)
        if targets:
            self.run_cancel(self.cancel_command(targets))

    def cancel_targets(self, job_ids: Sequence[str]) -> list[str]:
        """What the cancel command is given to end ``job_ids`` (already marked cancelled in the ledger)."""
        return list(job_ids)

    def run_cancel(self, argv: Sequence[str]) -> None:
        """Run a command that ends jobs; jobs that already ended, or that the scheduler forgot,
        are fine to "cancel"."""
        result = self.run(argv)
        if not self._went_through(result):
            result.check(BackendUnavailableError, f"cancelling with {argv[0]}")

    def _went_through(self, result: CommandResult) -> bool:
        """Whether a command on jobs did all it could: every line it complained in is about a job
        that already ended or that the scheduler no longer knows."""
        ignorable = self.unknown_job_words + self.finished_job_words
        said = [line for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
        return result.ok or (bool(said) and all(any(word in line for word in ignorable) for line in said))
