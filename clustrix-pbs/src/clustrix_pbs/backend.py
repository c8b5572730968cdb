"""The ``pbs`` backend: PBS Pro / OpenPBS and Torque words for the core's batch-scheduler base.

One backend, two dialects, told apart once by ``qstat --version`` (or the profile's
``pbs_dialect``): PBS Pro asks ``-l select=N:ncpus=C:mem=M``, arrays ``-J``, and is polled
with ``qstat -x -f -F json`` (finished jobs and their ``Exit_status`` included); Torque
asks ``-l nodes=N:ppn=C``, ``-l mem``, arrays ``-t``, and is polled with text
``qstat -f``. A poll is one ``qstat`` for every job.

Where the scheduler keeps no exit status (Torque's finished ``C`` records, and Slurm's
Torque-compatible wrapper, whose ``qstat -f`` has none), the job's end record decides
(clustrix.endrecord: the script's exit status, the runner's outcome), with the scheduler's
start, end and walltime to tell a time limit apart. The wrapper also names array tasks
nowhere (a started task is a job of its own, ``qsub -t`` prints only the array's number):
the id each task's record gives is read until every task of the poll is known.

qsub runs in the script's directory (the job's PBS_O_WORKDIR) and is given the script by
its plain name. Slurm's Torque-compatible wrapper (told apart by ``qstat --version``) pastes
``-o``/``-e`` and the script into a shell command line for sbatch, which then expands ``%``
in the whole path: there the output paths go shell-quoted with ``%`` doubled; elsewhere
relative to that directory, so no ``host:`` is read into a colon.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from clustrix import convert, endrecord
from clustrix.batch import BatchBackend
from clustrix.errors import BackendUnavailableError, ConfigError
from clustrix.records import Allocation, JobMetrics
from clustrix.spec import JobSpec
from clustrix.state import JobState, JobStatus
from clustrix.transport import CommandResult
from clustrix_pbs import parse

# In the job's directory (shell-quoted argument, never parsed), run qsub with what follows.
_IN_DIRECTORY = 'cd "$1" && shift && exec "$@"'
# Arrays per qsub: PBS Pro's default max_array_size; Slurm's MaxArraySize (1001) under its wrapper.
MAX_ARRAY = {parse.PRO: 10000, parse.TORQUE: 1000}


def _env_table(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"pbs_env={value!r}: expected a table of NAME = 'value' strings")
    for name, item in value.items():
        convert.env_name(name, "pbs_env")
        if not isinstance(item, str) or "\0" in item:
            raise ConfigError(f"pbs_env: {name}={item!r}: values must be strings")
    return tuple(sorted(value.items()))


def _walltime(seconds: int) -> str:
    """PBS's ``HH:MM:SS``, hours past 24 included."""
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _megabytes(size: int) -> str:
    return f"{-(-size // 1024**2)}mb"


class PbsBackend(BatchBackend):
    """PBS through qsub/qstat/qdel; job ids are PBS's (``123.server``, ``123[4].server``; ``123``, ``123[4]``)."""

    options: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "pbs_dialect": convert.choice("pbs_dialect", (parse.PRO, parse.TORQUE)),
        "pbs_path": convert.word("pbs_path", r"/[^\0\n\r]*", "the absolute path of the directory holding qsub"),
        "pbs_env": _env_table,
    }
    scheduler = "PBS"
    directive_prefix = "#PBS"
    job_id_expression = "$PBS_JOBID"
    # PBS Pro and Torque name a task 123[4].srv in PBS_JOBID; Slurm's wrapper gives it a number of
    # its own, so there the id is the array's (PBS_ARRAY_ID) and the index, as task_id writes it.
    task_id_expression = (
        '$(case $PBS_JOBID in *"["*) printf %s "$PBS_JOBID";; '
        '*) printf %s "${PBS_ARRAY_ID}[${PBS_ARRAY_INDEX}]";; esac)'
    )
    # PBS Pro and the wrapper say PBS_ARRAY_INDEX, Torque PBS_ARRAYID (read inside $((...))).
    task_index_variable = "${PBS_ARRAY_INDEX:-$PBS_ARRAYID}"
    first_array_index = 0
    # Old Torque servers refuse longer names.
    name_limit = 15
    hold_option = "-h"
    unknown_job_words = ("Unknown Job Id", "Unknown job id")
    finished_job_words = ("Job has finished", "invalid state for job", "Request invalid for state of job")
    unreachable_words = (
        "Unable to contact slurm controller",
        "cannot connect to server",
        "Cannot connect to specified server host",
        "could not connect to trqauthd",
        "Connection refused",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dialect: str | None = self.config.option("pbs_dialect")
        # SchedMD's Torque-compatible wrapper over Slurm (told by qstat --version), not a real Torque.
        self._slurm_wrapper = False
        # A bare array task id (123[4]) -> the id PBS gave the started task, from its PBS_JOBID.
        self._real: dict[str, str] = {}
        # The wall-clock second in which this client's last qstat ended (see query_would_wait).
        self._last_qstat_second: int | None = None

    # -- dialect and commands ----------------------------------------------------------------

    @property
    def dialect(self) -> str:
        """``pro`` or ``torque``: the profile's ``pbs_dialect``, else what ``qstat --version`` says (asked once)."""
        if self._dialect is None:
            result = self.run([self.command("qstat"), "--version"])
            found = parse.detect_dialect(result.stdout + result.stderr)
            if found is None:
                raise BackendUnavailableError(
                    f"{self.config.label}: cannot tell PBS Pro from Torque by `qstat --version` "
                    f"({result.words[-200:]}); set pbs_dialect = 'pro' or 'torque' in the profile"
                )
            self._dialect = found
            self._slurm_wrapper = "Unknown option: version" in result.stdout + result.stderr
            self.log.info("PBS dialect detected", dialect=found, slurm_wrapper=self._slurm_wrapper)
        return self._dialect

    @property
    def cores_variable(self) -> str:  # type: ignore[override]
        """The job's cores: PBS Pro sets NCPUS, Torque PBS_NUM_PPN (absent: the cores asked for)."""
        return "NCPUS" if self.dialect == parse.PRO else "PBS_NUM_PPN"

    def command(self, name: str) -> str:
        directory = self.config.option("pbs_path")
        return f"{directory.rstrip('/')}/{name}" if directory else name

    def command_env(self) -> Mapping[str, str] | None:
        return dict(self.config.option("pbs_env", ())) or None

    def check_command(self) -> list[str]:
        return [self.command("qstat"), "-Q"]

    def check(self) -> str:
        dialect = self.dialect
        result = self.run(self.check_command()).check(BackendUnavailableError, "asking PBS for its queues")
        # qstat -Q: a header, a line of dashes, then one queue per line.
        lines = result.stdout.splitlines()
        start = next((i + 1 for i, line in enumerate(lines) if line.startswith("---")), len(lines))
        queues = [line.split()[0] for line in lines[start:] if line.strip()]
        return f"PBS ({dialect} dialect) answers; queues: {', '.join(queues) or '(none listed)'}"

    # -- the pieces of the batch base ------------------------------------------------------

    def job_name(self, spec: JobSpec) -> str:
        # PBS wants a name that starts with a letter.
        name = super().job_name(spec)
        return (name if name[0].isalpha() else f"j{name}")[: self.name_limit]

    def resource_options(self, spec: JobSpec, name: str) -> list[str]:
        # One node, one task: the core refuses a call on several tasks here (no ``runs_tasks``).
        resources = spec.resources
        options = [f"-N {name}"]
        if self.dialect == parse.PRO:
            chunk = f"1:ncpus={resources.cores}"
            chunk += f":mem={_megabytes(resources.memory)}" if resources.memory else ""
            chunk += f":ngpus={resources.gpus}" if resources.gpus else ""
            options.append(f"-l select={chunk}")
        else:
            options.append(f"-l nodes=1:ppn={resources.cores}" + (f":gpus={resources.gpus}" if resources.gpus else ""))
            if resources.memory:
                # Torque's mem is the whole job's.
                options.append(f"-l mem={_megabytes(resources.memory)}")
        if resources.time:
            options.append(f"-l walltime={_walltime(resources.time)}")
        if resources.queue:
            options.append(f"-q {resources.queue}")
        if resources.account:
            options.append(f"-A {resources.account}")
        return options

    def array_options(self, first: int, last: int) -> list[str]:
        if self.dialect != parse.PRO:
            return [f"-t {first}-{last}"]
        # PBS Pro refuses a range of one (-J 0-0: "illegal -J value"); a step past the end is one
        # subjob all the same (a single worker relaunched).
        return [f"-J {first}-{last}" if last > first else f"-J {first}-{first + 1}:2"]

    def dependency_options(self, after: Sequence[str]) -> list[str]:
        # A bare task 123[4] exists only under Slurm's wrapper, whose depend= goes to Slurm as is.
        ids = [f"{task[0]}_{task[1]}" if (task := parse.bare_task(job_id)) else job_id for job_id in after]
        return [f"-W depend=afterok:{':'.join(ids)}"]

    def submit_command(self, script: str, stdout: str, stderr: str) -> list[str]:
        directory = script.rsplit("/", 1)[0]
        if self.dialect == parse.TORQUE and self._slurm_wrapper:
            # The wrapper pastes -o/-e into a shell command line for sbatch, which expands % in
            # the whole path (the job's directory too): shell-quoted, % escaped, absolute.
            out, err = (shlex.quote(path.replace("%", "%%")) for path in (stdout, stderr))
        else:
            # Relative to qsub's directory: no "host:" reading of a colon in a path.
            out, err = (path.removeprefix(f"{directory}/") for path in (stdout, stderr))
        # PBS Pro: written directly where they belong, not copied at the end over the runner's output.
        keep = ["-k", "doe"] if self.dialect == parse.PRO else []
        return [self.command("qsub"), *keep, "-o", out, "-e", err, script]

    def run(self, argv: Sequence[str]) -> CommandResult:
        if argv and argv[0] == self.command("qsub") and argv[-1].startswith("/"):
            # qsub runs in its script's directory, named relative to it: see the module's doc.
            directory, script = argv[-1].rsplit("/", 1)
            argv = ["sh", "-c", _IN_DIRECTORY, "qsub", directory, *argv[:-1], script]
        return super().run(argv)

    def parse_job_id(self, stdout: str) -> str | None:
        words = stdout.split()
        job_id = words[-1] if words else ""
        return job_id if job_id[:1].isdigit() and parse.SCHEDULER_ID.match(job_id) else None

    def task_id(self, array_id: str, index: int) -> str:
        return parse.task_id(array_id, index)

    def base_id(self, job_id: str) -> str:
        return parse.base_id(job_id)

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return [self.command("qdel"), *job_ids]

    def release_command(self, job_ids: Sequence[str]) -> list[str]:
        return [self.command("qrls"), *job_ids]

    def max_array_size(self) -> int:
        return MAX_ARRAY[self.dialect]

    # -- cancel ------------------------------------------------------------------------------

    def cancel_targets(self, job_ids: Sequence[str]) -> list[str]:
        targets = {job_id: self._cancel_target(job_id) for job_id in job_ids}
        left = [job_id for job_id, target in targets.items() if target is None and not self.ledger.is_worker(job_id)]
        if left:
            # One line for all of them: a map's idle workers are hundreds.
            self.log.warning("PBS (Slurm's wrapper) cannot cancel one task of an array alone: they run on", tasks=left)
        return list(dict.fromkeys(target for target in targets.values() if target))

    def _cancel_target(self, job_id: str) -> str | None:
        """What qdel must be given to end ``job_id``; None when nothing can.

        Only Slurm's wrapper has bare task ids (123[4]), and its qdel ends an array task by no
        id at all (the task's own number is refused, 123_4 is read as 123): only the array's own
        number, which ends every task. So a task goes only with all of its unfinished siblings.
        """
        task = parse.bare_task(job_id)
        if task is None:
            return job_id
        siblings = [
            j
            for j in self.ledger.known()
            if (t := parse.bare_task(j)) and t[0] == task[0] and not self.ledger.was_cancelled(j)
        ]
        if not siblings:
            return task[0]
        # An idle worker goes with its array once every call ended (retire_workers).
        return None

    def retire_workers(self, tasks: Sequence[str]) -> None:
        """Now that no worker runs a call any more, what is left of their arrays goes.

        Under Slurm's wrapper the idle workers were not cancelled (one task cannot be). On PBS
        Pro a subjob deleted while it was being started is requeued instead (OpenPBS): once its
        batch directory is gone it fails to start, again and again, until PBS holds its array
        for ever. A forced delete purges the arrays whatever state their subjobs are in.
        """
        self.ledger.forget(tasks)
        if self.dialect == parse.PRO:
            arrays = sorted({parse.base_id(task) for task in tasks})
            if arrays:
                self.run_cancel([self.command("qdel"), "-W", "force", *arrays])
            return
        arrays = sorted({bare[0] for task in tasks if (bare := parse.bare_task(task))})
        if arrays:
            self.run_cancel(self.cancel_command(arrays))

    # -- status -----------------------------------------------------------------------------

    def qstat(self, ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """The scheduler's records of ``ids`` (those it knows), with one ``qstat``."""
        if not ids:
            return {}
        pro = self.dialect == parse.PRO
        # -t: an array asked by its own id lists each of its subjobs too (see query).
        argv = [self.command("qstat"), *(["-x", "-f", "-F", "json", "-t"] if pro else ["-f"]), *ids]
        result = self.run(argv)
        self._last_qstat_second = int(time.time())
        records = parse.parse_json(result.stdout) if pro and "{" in result.stdout else parse.parse_full(result.stdout)
        # Torque and Slurm's wrapper exit 153 when an id is unknown; PBS Pro says so on stderr.
        unknown = result.returncode == 153 or any(word in result.stderr for word in self.unknown_job_words)
        if not result.ok and not records and not unknown:
            result.check(BackendUnavailableError, "polling with qstat")
        return records

    def query_would_wait(self) -> bool:
        """OpenPBS's qstat sleeps 0.2 s when the same user's last qstat ended in the same
        wall-clock second (its ``delay_query``, kind to a server polled in a loop): within that
        second a poll reads end records instead. Asked by the monitor outside its polls, so
        it runs no command: a qstat has run, so the dialect is known."""
        return self._last_qstat_second == int(time.time()) and self.dialect == parse.PRO

    def _asked(self, job_id: str) -> str:
        """The id qstat is asked about for ``job_id`` (under the lock): a subjob's own id (``123[4].srv``:
        its array's record speaks for the array, not for it), the number Slurm's wrapper gave a started
        task, else, for a task the wrapper has not started, its array's number."""
        if parse.bare_task(job_id):
            return self._real.get(job_id) or parse.base_id(job_id)
        return job_id

    def _learn_task_ids(self, tasks: Sequence[str]) -> None:
        """The ids PBS gave started array tasks, from the PBS_JOBID each wrote."""
        learned = {job_id: r.scheduler_id for job_id, r in self.end_records(tasks).items() if r.scheduler_id}
        with self.lock:
            self._real.update(learned)

    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        dialect = self.dialect
        with self.lock:
            unknown = [j for j in job_ids if parse.bare_task(j) and j not in self._real]
        if unknown:
            self._learn_task_ids(unknown)
        with self.lock:
            ask = {j: self._asked(j) for j in job_ids}
            unstarted = {j for j in job_ids if parse.bare_task(j) and j not in self._real}
        asked = sorted(set(ask.values()))
        records = self.qstat(parse.arrays_for_subjobs(asked) if dialect == parse.PRO else asked)
        found: dict[str, JobStatus] = {}
        ended: dict[str, dict[str, str] | None] = {}
        for job_id in job_ids:
            record = records.get(ask[job_id])
            if record is None:
                continue
            live = parse.status(record, dialect)
            if job_id in unstarted:
                # Asked by its array's own record: the task itself has not written its id yet.
                if live is not None:
                    found[job_id] = JobStatus(JobState.PENDING, reason="array task not started yet")
                else:
                    ended[job_id] = None
            elif live is not None:
                found[job_id] = live
            else:
                ended[job_id] = record
        # Own records where PBS keeps no exit status, and of jobs this client cancelled (whose
        # exit status may read as a success: see parse.final_status).
        needs_own = [
            j
            for j, record in ended.items()
            if record is None or parse.exit_status(record) is None or self.was_cancelled(j)
        ]
        own = self.end_records(needs_own) if needs_own else {}
        if ended:
            found.update(self._final(ended, dialect, needs_own, own))
        return found

    def _final(
        self,
        ended: Mapping[str, dict[str, str] | None],
        dialect: str,
        needs_own: Sequence[str],
        own: Mapping[str, endrecord.EndRecord],
    ) -> dict[str, JobStatus]:
        """How the ``ended`` jobs ended; ``own`` holds the records of those ``needs_own`` (no exit status kept)."""
        found = {}
        for job_id, record in ended.items():
            if job_id in needs_own and job_id not in own:
                continue  # not ours to judge (no directories known): UNKNOWN, the core reads the runner's record
            resources = self.resources_of(job_id)
            found[job_id] = parse.final_status(
                record,
                dialect,
                own.get(job_id, endrecord.EndRecord()),
                cancelled=self.was_cancelled(job_id),
                memory_limited=resources is not None and resources.memory is not None,
            )
        return found

    # -- what the validator asks ----------------------------------------------------------

    def record(self, job_id: str) -> dict[str, str] | None:
        """``qstat -f``'s record of one job (an unstarted array task: its array's), while PBS remembers it."""
        with self.lock:
            asked = self._asked(job_id)
        return self.qstat([asked]).get(asked)

    def job_in_queue(self, job_id: str) -> bool | None:
        return self.record(self.scheduler_job(job_id)) is not None

    def job_allocation(self, job_id: str, meta: Mapping[str, Any] | None) -> Allocation | None:
        record = self.record(self.scheduler_job(job_id))
        if record is None:
            return None
        cores = record.get("Resource_List.ncpus", "")
        return Allocation(
            cores=int(cores) if cores.isdigit() else None,
            memory=parse.memory(record.get("Resource_List.mem")),
            time_limit=parse.duration(record.get("Resource_List.walltime")),
            queue=record.get("queue"),
            nodes=tuple(host for host in parse.nodes(record).split(",") if host),
        )

    def job_metrics(self, job_id: str, meta: Mapping[str, Any] | None) -> JobMetrics | None:
        """qstat's account of a finished job; None when PBS keeps no exit status (the runner's record then)."""
        job_id = self.scheduler_job(job_id)
        record = self.record(job_id)
        if record is None or parse.exit_status(record) is None:
            return None
        cores = record.get("Resource_List.ncpus", "")
        return JobMetrics(
            job_id=job_id,
            backend=self.config.backend,
            state=record.get("job_state", ""),
            submitted_at=parse.timestamp(record.get("qtime")),
            started_at=parse.started(record),
            ended_at=parse.ended(record),
            exit_code=parse.exit_status(record),
            nodes=tuple(host for host in parse.nodes(record).split(",") if host),
            allocated_cores=int(cores) if cores.isdigit() else None,
            allocated_memory=parse.memory(record.get("Resource_List.mem")),
            peak_memory=parse.memory(record.get("resources_used.mem")),
            source="qstat",
        )
