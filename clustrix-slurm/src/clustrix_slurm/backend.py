"""The ``slurm`` backend: sbatch scripts rendered from Resources, job arrays for maps, batched polling.

Every command goes through the transport (this machine or a login node over SSH) with
``SLURM_CONF`` set when the profile names one. One call is one ``sbatch`` job; a batch
of several is ONE job array (split only past the cluster's ``MaxArraySize``) whose task
N reads its job directories from line N+1 of a tasks file. A poll is one ``sacct`` for
every job when accounting works (asked once per backend), else ``squeue``, with
``scontrol`` for the exit code of jobs that ended; jobs accounting has not recorded yet
(slurmdbd lags submission by a moment) are looked up with ``squeue`` too.
"""

from __future__ import annotations

import datetime
import re
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from clustrix.backend import Backend, StagedJob
from clustrix.errors import BackendUnavailableError, ConfigError, SubmissionError
from clustrix.log import get_logger
from clustrix.resources import Resources, format_time
from clustrix.state import JobState, JobStatus
from clustrix.transport import CommandResult
from clustrix.validation import Allocation, JobMetrics
from clustrix_slurm import parse

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_MAX_ARRAY = re.compile(r"^\s*MaxArraySize\s*=\s*(\d+)\s*$", re.MULTILINE)
# Words of Slurm's client library when the controller cannot be reached at all.
_UNREACHABLE = ("Unable to contact slurm controller", "Socket timed out", "Connection refused", "Zero Bytes")
_UNKNOWN_ID = "Invalid job id specified"
_SACCT_FIELDS = "JobID,State,ExitCode,Reason,NodeList"
_SQUEUE_FORMAT = "%i|%T|%r|%N"
_METRIC_FIELDS = "JobID,State,ExitCode,Submit,Start,End,NodeList,AllocCPUS,MaxRSS,AllocTRES"
ACCOUNTING_WAIT = 10.0


def _literal(path: str) -> str:
    """``path`` for sbatch's --output/--error, where ``%`` starts a replacement symbol."""
    return path.replace("%", "%%")


def _dependency(jobs: Sequence[StagedJob]) -> list[str]:
    """``afterok`` on every job the batch waits for; an array's tasks all wait for all of them.

    ``--kill-on-invalid-dep`` makes Slurm cancel the job when a dependency fails, even on
    clusters without ``DependencyParameters=kill_invalid_depend``, instead of leaving it
    pending forever.
    """
    after = list(dict.fromkeys(upstream for job in jobs for upstream in job.after))
    if not after:
        return []
    return [f"#SBATCH --dependency=afterok:{':'.join(after)}", "#SBATCH --kill-on-invalid-dep=yes"]


def _local_time(text: str) -> datetime.datetime | None:
    """sacct prints the cluster's local time without a zone; ``Unknown`` when there is none yet."""
    try:
        return datetime.datetime.fromisoformat(text).astimezone()
    except ValueError:
        return None


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"slurm_conf={value!r}: expected the path of a slurm.conf")
    return value


def _throttle(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"array_throttle={value!r}: expected a whole number of at least 1")
    return value


class SlurmBackend(Backend):
    """Slurm through its command-line tools; job ids are Slurm's (``123``, or ``123_4`` for array tasks)."""

    options: ClassVar[Mapping[str, Callable[[Any], Any]]] = {"slurm_conf": _path, "array_throttle": _throttle}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._accounting: bool | None = None
        self._max_array_size: int | None = None
        # Base ids of jobs submitted with --mem: their SIGKILL is a memory kill.
        self._memory_limited: set[str] = set()
        # Batch directories (array scripts, tasks files, Slurm's own output) and their unfinished
        # job ids; each is cleaned by the profile's policy once all of its jobs have ended.
        self._batches: dict[str, set[str]] = {}
        self._batch_failed: set[str] = set()
        # Jobs last reported RUNNING, so a lagging accounting record cannot move them back.
        self._running_seen: set[str] = set()
        self._log = get_logger(cluster=self.config.label)

    # -- talking to Slurm ---------------------------------------------------------------

    def _run(self, argv: Sequence[str]) -> CommandResult:
        conf = self.config.option("slurm_conf")
        return self.transport.run(argv, env={"SLURM_CONF": conf} if conf else None)

    def _query(self, argv: Sequence[str], what: str) -> str:
        """stdout of a query; an id Slurm has forgotten is an empty answer, other failures raise."""
        result = self._run(argv)
        if not result.ok and _UNKNOWN_ID in result.stderr:
            return ""
        return result.check(BackendUnavailableError, what).stdout

    def check(self) -> str:
        result = self._run(["scontrol", "ping"]).check(BackendUnavailableError, "asking slurmctld")
        return result.stdout.strip()

    @property
    def accounting(self) -> bool:
        """Whether ``sacct`` answers here; asked once, since it only changes with the cluster's setup."""
        with self._lock:
            if self._accounting is None:
                result = self._run(["sacct", "-n", "-X", "-j", "1", "-o", "JobID"])
                self._accounting = result.ok
                if not result.ok:
                    self._log.info(
                        "sacct unusable, polling with squeue and scontrol", answer=result.stderr.strip()[-300:]
                    )
            return self._accounting

    @property
    def max_array_size(self) -> int:
        """The cluster's MaxArraySize: an array's indices must stay below it. Asked once."""
        with self._lock:
            if self._max_array_size is None:
                config = self._run(["scontrol", "show", "config"]).check(BackendUnavailableError, "reading config")
                match = _MAX_ARRAY.search(config.stdout)
                # Slurm's documented default when the line is absent.
                self._max_array_size = int(match[1]) if match else 1001
            return self._max_array_size

    # -- submission ---------------------------------------------------------------------

    def submit(self, jobs: Sequence[StagedJob], chunksize: int = 1) -> list[str]:
        chunks = [list(jobs[i : i + chunksize]) for i in range(0, len(jobs), chunksize)]
        if len(chunks) == 1:
            job_id = self._submit_single(chunks[0])
            return [job_id] * len(chunks[0])
        ids: list[str] = []
        batch_dir = f"{self.workdir}/batch-{uuid.uuid4().hex}"
        self.transport.make_dirs([batch_dir], 0o700)
        submitted: list[str] = []
        per_array = self.max_array_size
        try:
            for number, start in enumerate(range(0, len(chunks), per_array)):
                group = chunks[start : start + per_array]
                array_id = self._submit_array(group, batch_dir, number)
                submitted.append(array_id)
                ids += [f"{array_id}_{index}" for index, chunk in enumerate(group) for _ in chunk]
        except BaseException:
            # All of the batch or none of it: the caller cleans the job directories.
            if submitted:
                self.cancel(submitted)
            self.transport.remove_tree(batch_dir)
            raise
        with self._lock:
            self._batches[batch_dir] = set(ids)
        return ids

    def _submit_single(self, chunk: list[StagedJob]) -> str:
        directory = chunk[0].directory
        lines = [
            "#!/bin/bash",
            *self._directives(chunk[0]),
            *_dependency(chunk),
            "export CLUSTRIX_JOB_ID=$SLURM_JOB_ID",
            "export CLUSTRIX_CORES=${SLURM_CPUS_PER_TASK:-1}",
            *self.run_lines(chunk),
        ]
        script = f"{directory}/job.sh"
        self.transport.write_files({script: ("\n".join(lines) + "\n").encode()}, 0o700)
        out = _literal(directory)
        return self._sbatch(script, chunk[0], f"{out}/stdout", f"{out}/stderr")

    def _submit_array(self, group: list[list[StagedJob]], batch_dir: str, number: int) -> str:
        first = group[0][0]
        tasks = f"{batch_dir}/tasks-{number}"
        throttle = self.config.option("array_throttle")
        array = f"0-{len(group) - 1}" + (f"%{throttle}" if throttle else "")
        python = shlex.quote(self.python_for(first.spec))
        lines = [
            "#!/bin/bash",
            *self._directives(first),
            f"#SBATCH --array={array}",
            *_dependency([job for chunk in group for job in chunk]),
            "export CLUSTRIX_JOB_ID=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}",
            "export CLUSTRIX_CORES=${SLURM_CPUS_PER_TASK:-1}",
            # This task's job directories, shell-quoted on its line of the tasks file.
            f'eval "set -- $(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(tasks)})"',
            # Setup's output belongs with the task's first call, where the client reads stderr.
            'exec >>"$1/stdout" 2>>"$1/stderr"',
            *self.run_lines([first])[:-1],
            f'{python} "$1/runner.py" "$@"',
        ]
        task_lines = "".join(" ".join(shlex.quote(job.directory) for job in chunk) + "\n" for chunk in group)
        script = f"{batch_dir}/array-{number}.sh"
        self.transport.write_files({tasks: task_lines.encode()}, 0o600)
        self.transport.write_files({script: ("\n".join(lines) + "\n").encode()}, 0o700)
        # One file for the whole array: only what fails before the script's redirect lands there.
        out = f"{_literal(batch_dir)}/slurm-%A.out"
        return self._sbatch(script, first, out, out)

    def _directives(self, job: StagedJob) -> list[str]:
        resources: Resources = job.spec.resources
        options = [
            f"--job-name={_NAME_UNSAFE.sub('_', job.spec.name)[:100] or 'clustrix'}",
            # The runner appends each call's own output to the same files.
            "--open-mode=append",
            f"--cpus-per-task={resources.cores}",
            f"--nodes={resources.nodes}",
        ]
        if resources.memory:
            options.append(f"--mem={-(-resources.memory // 1024**2)}M")
        if resources.time:
            options.append(f"--time={format_time(resources.time)}")
        if resources.queue:
            options.append(f"--partition={resources.queue}")
        if resources.account:
            options.append(f"--account={resources.account}")
        if resources.gpus:
            options.append(f"--gpus={resources.gpus}")
        if resources.tasks_per_node:
            options.append(f"--ntasks-per-node={resources.tasks_per_node}")
        lines = [f"#SBATCH {option}" for option in options]
        lines += [extra if extra.startswith("#SBATCH") else f"#SBATCH {extra}" for extra in resources.extra]
        return lines

    def _sbatch(self, script: str, job: StagedJob, stdout: str, stderr: str) -> str:
        """Submit ``script``; paths go on the command line, where no #SBATCH parsing can split them."""
        result = self._run(["sbatch", "--parsable", f"--output={stdout}", f"--error={stderr}", script])
        words = (result.stderr.strip() or result.stdout.strip())[-2000:]
        if not result.ok:
            if any(marker in words for marker in _UNREACHABLE):
                raise BackendUnavailableError(f"{self.config.label}: sbatch could not reach slurmctld: {words}")
            raise SubmissionError(f"sbatch refused the job {job.spec.name!r}", scheduler_output=words)
        # --parsable prints "id" or "id;cluster".
        job_id = result.stdout.strip().splitlines()[-1].split(";", 1)[0]
        if not job_id.isdigit():
            raise SubmissionError("sbatch answered no job id", scheduler_output=result.stdout + result.stderr)
        if job.spec.resources.memory:
            with self._lock:
                self._memory_limited.add(job_id)
        return job_id

    # -- watching and cancelling ------------------------------------------------------

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        found: dict[str, JobStatus] = {}
        if self.accounting:
            found = self._sacct(job_ids)
        missing = [job_id for job_id in job_ids if job_id not in found]
        if missing:
            found.update(self._squeue(missing))
        unknown = JobStatus(JobState.UNKNOWN, reason="Slurm no longer knows this job")
        statuses = {job_id: found.get(job_id, unknown) for job_id in job_ids}
        with self._lock:
            self._running_seen |= {j for j, status in statuses.items() if status.state is JobState.RUNNING}
            self._running_seen -= {j for j, status in statuses.items() if status.state.finished}
        self._clean_batches(statuses)
        return statuses

    def _clean_batches(self, statuses: Mapping[str, JobStatus]) -> None:
        ended = []
        with self._lock:
            for batch_dir, waiting in self._batches.items():
                for job_id in [j for j in waiting if j in statuses and statuses[j].state.finished]:
                    waiting.discard(job_id)
                    if statuses[job_id].state is not JobState.COMPLETED:
                        self._batch_failed.add(batch_dir)
                if not waiting:
                    ended.append(batch_dir)
            for batch_dir in ended:
                del self._batches[batch_dir]
        for batch_dir in ended:
            failed = batch_dir in self._batch_failed
            self._batch_failed.discard(batch_dir)
            policy = self.config.cleanup
            if policy == "always" or (policy == "on_success" and not failed):
                self.transport.remove_tree(batch_dir)

    def _bases(self, job_ids: Sequence[str]) -> str:
        return ",".join(sorted({parse.base_id(job_id) for job_id in job_ids}, key=int))

    def _memory_limit(self, job_id: str) -> bool:
        with self._lock:
            return parse.base_id(job_id) in self._memory_limited

    def _sacct(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        argv = ["sacct", "-n", "-P", "-X", "-j", self._bases(job_ids), "-o", _SACCT_FIELDS]
        found = {}
        for line in self._query(argv, "polling with sacct").splitlines():
            fields = line.split("|")
            if len(fields) != 5:
                continue
            job_id, state, code, reason, nodes = fields
            for one in parse.expand_job_id(job_id):
                with self._lock:
                    # slurmdbd lags slurmctld: a job squeue already showed running may still be
                    # PENDING in sacct. Such a stale line is left out, so squeue answers for it.
                    stale = state == "PENDING" and one in self._running_seen
                if not stale:
                    found[one] = parse.status(state, reason, code, nodes, self._memory_limit(one))
        return found

    def _squeue(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        argv = ["squeue", "-h", "-r", "-t", "all", "-j", self._bases(job_ids), "-o", _SQUEUE_FORMAT]
        found = {}
        for line in self._query(argv, "polling with squeue").splitlines():
            fields = line.split("|")
            if len(fields) != 4:
                continue
            job_id, state, reason, nodes = fields
            found[job_id] = parse.status(state, reason, "", nodes, self._memory_limit(job_id))
        # squeue has no exit code: ask scontrol, once per job (or array) that ended or is gone.
        ended = [j for j in job_ids if j not in found or (found[j].state.finished and found[j].exit_code is None)]
        for base in sorted({parse.base_id(job_id) for job_id in ended}, key=int):
            text = self._query(["scontrol", "-o", "show", "job", base], "asking scontrol")
            for job_id, record in parse.parse_scontrol(text).items():
                found[job_id] = parse.status(
                    record.get("JobState", ""),
                    record.get("Reason", ""),
                    record.get("ExitCode", ""),
                    record.get("NodeList", ""),
                    self._memory_limit(job_id),
                )
        return found

    # -- what the validator asks ----------------------------------------------------------

    def scontrol_record(self, job_id: str) -> dict[str, str] | None:
        """``scontrol show job``'s record of one job, while Slurm remembers it (MinJobAge)."""
        text = self._query(["scontrol", "-o", "show", "job", job_id], "asking scontrol")
        return parse.parse_scontrol(text).get(job_id)

    def allocation(self, job_id: str) -> Allocation | None:
        record = self.scontrol_record(job_id)
        if record is None:
            return None
        # Slurm 22.05 calls the granted resources TRES; later versions AllocTRES.
        granted = parse.tres(record.get("AllocTRES") or record.get("TRES", ""))
        return Allocation(
            cores=int(granted["cpu"]) if granted.get("cpu", "").isdigit() else None,
            memory=parse.slurm_memory(granted.get("mem", "")),
            time_limit=parse.slurm_time(record.get("TimeLimit", "")),
            queue=record.get("Partition"),
            nodes=(record["NodeList"],) if record.get("NodeList") not in (None, "", "(null)") else (),
        )

    def accounting_metrics(self, job_id: str, backend_name: str) -> JobMetrics | None:
        """sacct's record of the job and its steps; None where accounting is off or has no record.

        slurmdbd records a job's end and its batch step's usage a moment after slurmctld: the
        record is read again, for up to ``ACCOUNTING_WAIT`` seconds, until it shows the end,
        what was allocated and the ended batch step; after that, what it has.
        """
        if not self.accounting:
            return None
        argv = ["sacct", "-n", "-P", "-j", job_id, "-o", _METRIC_FIELDS]
        deadline = time.monotonic() + ACCOUNTING_WAIT
        while True:
            rows = [line.split("|") for line in self._query(argv, "reading accounting").splitlines()]
            rows = [row for row in rows if len(row) == _METRIC_FIELDS.count(",") + 1]
            job = next((row for row in rows if row[0] == job_id), None)
            complete = (
                job is not None
                and _local_time(job[5]) is not None
                and "mem=" in job[9]
                and any(row[0] == f"{job_id}.batch" and _local_time(row[5]) is not None for row in rows)
            )
            if complete or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if job is None:
            return None
        _, state, code, submit, start, end, nodes, cpus, _, granted = job
        # MaxRSS is reported on the steps (batch, extern, srun steps), not on the job's own line.
        peaks = [parse.slurm_memory(row[8]) or 0 for row in rows]
        return JobMetrics(
            job_id=job_id,
            backend=backend_name,
            state=state.split(" ", 1)[0],
            submitted_at=_local_time(submit),
            started_at=_local_time(start),
            ended_at=_local_time(end),
            exit_code=parse.exit_code(code)[0],
            nodes=(nodes,) if nodes and nodes != "None assigned" else (),
            allocated_cores=int(cpus) if cpus.isdigit() else None,
            allocated_memory=parse.slurm_memory(parse.tres(granted).get("mem", "")),
            peak_memory=max(peaks) or None,
            source="sacct",
        )

    def cancel(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        result = self._run(["scancel", *job_ids])
        # Jobs that already ended are fine to "cancel"; anything else is an error.
        problems = [
            line
            for line in result.stderr.splitlines()
            if line.strip() and "already completing or completed" not in line and _UNKNOWN_ID not in line
        ]
        if problems:
            result.check(BackendUnavailableError, "cancelling with scancel")
