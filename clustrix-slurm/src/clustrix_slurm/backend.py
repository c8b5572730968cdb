"""The ``slurm`` backend: Slurm's words for the core's batch-scheduler base.

Every command goes through the transport (this machine or a login node over SSH) with
``SLURM_CONF`` set when the profile names one. A batch of several calls is one job
array (``--array``, split past the cluster's ``MaxArraySize``). A poll is one ``sacct``
for every job when accounting works (asked once per backend), else ``squeue``, with
``scontrol`` for the exit code of jobs that ended; jobs accounting has not recorded yet
(slurmdbd lags submission by a moment) are looked up with ``squeue`` too, and so are
array tasks only an ended array's line speaks for, and every job of a poll whose
``sacct`` fails after it had worked (slurmdbd down).
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import attrs

from clustrix import convert
from clustrix.batch import BatchBackend
from clustrix.errors import BackendUnavailableError
from clustrix.records import Allocation, JobMetrics
from clustrix.resources import format_time
from clustrix.spec import JobSpec
from clustrix.state import JobState, JobStatus
from clustrix_slurm import parse

_MAX_ARRAY = re.compile(r"^\s*MaxArraySize\s*=\s*(\d+)\s*$", re.MULTILINE)
_SACCT_FIELDS = "JobID,State,ExitCode,Reason,NodeList"
_SQUEUE_FORMAT = "%i|%T|%r|%N"
_METRIC_FIELDS = "JobID,State,ExitCode,Submit,Start,End,NodeList,AllocCPUS,MaxRSS,AllocTRES"
ACCOUNTING_WAIT = 10.0
# Run by srun on every task: the task's own variables become the runner's. SLURM_LAUNCH_NODE_IPADDR
# is the address srun ran from, the batch host, which is the first node and so rank 0's.
_TASK_VARIABLES = (
    "export CLUSTRIX_RANK=$SLURM_PROCID CLUSTRIX_LOCAL_RANK=$SLURM_LOCALID "
    'CLUSTRIX_MAIN_ADDRESS=$SLURM_LAUNCH_NODE_IPADDR; exec "$@"'
)


def _literal(path: str) -> str:
    """``path`` for sbatch's --output/--error, where ``%`` starts a replacement symbol."""
    return path.replace("%", "%%")


def _local_time(text: str) -> datetime.datetime | None:
    """sacct prints the cluster's local time without a zone; ``Unknown`` when there is none yet."""
    try:
        return datetime.datetime.fromisoformat(text).astimezone()
    except ValueError:
        return None


def _megabytes(memory: int) -> str:
    """``--mem``'s value: whole MiB, rounded up (Slurm's ``M`` is a mebibyte)."""
    return f"{-(-memory // 1024**2)}M"


def _whole_minutes(seconds: int) -> int:
    """Slurm counts time limits in whole minutes and ignores seconds: round up (the runner holds the
    call to the exact limit, see ``time_granularity``)."""
    return -(-seconds // 60) * 60


class SlurmBackend(BatchBackend):
    """Slurm through its command-line tools; job ids are Slurm's (``123``, or ``123_4`` for array tasks)."""

    options: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "slurm_conf": convert.string("slurm_conf", "the path of a slurm.conf"),
        "array_throttle": convert.whole_number("array_throttle"),
    }
    scheduler = "Slurm"
    directive_prefix = "#SBATCH"
    job_id_expression = "$SLURM_JOB_ID"
    task_id_expression = "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
    task_index_variable = "SLURM_ARRAY_TASK_ID"
    cores_variable = "SLURM_CPUS_PER_TASK"
    time_granularity = 60
    unknown_job_words = ("Invalid job id specified",)
    finished_job_words = ("already completing or completed",)
    # Words of Slurm's client library when the controller cannot be reached at all.
    hold_option = "--hold"
    runs_tasks = True
    unreachable_words = ("Unable to contact slurm controller", "Socket timed out", "Connection refused", "Zero Bytes")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._accounting: bool | None = None
        self._max_array_size: int | None = None

    # -- the pieces of the batch base ------------------------------------------------------

    def command_env(self) -> Mapping[str, str] | None:
        conf = self.config.option("slurm_conf")
        return {"SLURM_CONF": conf} if conf else None

    def check_command(self) -> list[str]:
        return ["scontrol", "ping"]

    def resource_options(self, spec: JobSpec, name: str) -> list[str]:
        resources = spec.resources
        options = [
            f"--job-name={name}",
            # The runner appends each call's own output to the same files.
            "--open-mode=append",
            f"--cpus-per-task={resources.cores}",
            f"--nodes={resources.nodes}",
        ]
        if resources.memory:
            options.append(f"--mem={_megabytes(resources.memory)}")
        if resources.time:
            options.append(f"--time={format_time(_whole_minutes(resources.time))}")
        if resources.queue:
            options.append(f"--partition={resources.queue}")
        if resources.account:
            options.append(f"--account={resources.account}")
        if resources.gpus:
            options.append(f"--gpus={resources.gpus}")
        if resources.tasks_per_node:
            options.append(f"--ntasks-per-node={resources.tasks_per_node}")
        return options

    def task_launch(self, spec: JobSpec) -> tuple[list[str], list[str]]:
        """srun starts the runner on every task. ``--kill-on-bad-exit``: once a rank has raised (and
        written its result), the others are ended instead of waiting for it until the time limit."""
        tasks = spec.resources.tasks
        exports = [
            f"export CLUSTRIX_WORLD_SIZE={tasks}",
            # scontrol expands the node list locally, without asking slurmctld.
            'export CLUSTRIX_NODES=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | paste -sd, -)',
        ]
        launcher = [
            "srun",
            f"--ntasks={tasks}",
            f"--cpus-per-task={spec.resources.cores}",
            "--kill-on-bad-exit=1",
            "bash",
            "-c",
            _TASK_VARIABLES,
            "clustrix-task",
        ]
        return exports, launcher

    def array_options(self, first: int, last: int) -> list[str]:
        throttle = self.config.option("array_throttle")
        return [f"--array={first}-{last}" + (f"%{throttle}" if throttle else "")]

    def dependency_options(self, after: Sequence[str]) -> list[str]:
        """``afterok`` on every job; ``--kill-on-invalid-dep`` cancels the job when one fails, even on
        clusters without ``DependencyParameters=kill_invalid_depend``, instead of leaving it pending forever."""
        return [f"--dependency=afterok:{':'.join(after)}", "--kill-on-invalid-dep=yes"]

    def submit_command(self, script: str, stdout: str, stderr: str) -> list[str]:
        # Paths go on the command line, where no #SBATCH parsing can split them.
        return ["sbatch", "--parsable", f"--output={_literal(stdout)}", f"--error={_literal(stderr)}", script]

    def parse_job_id(self, stdout: str) -> str | None:
        # --parsable prints "id" or "id;cluster".
        lines = stdout.strip().splitlines()
        job_id = lines[-1].split(";", 1)[0] if lines else ""
        return job_id if job_id.isdigit() else None

    def task_id(self, array_id: str, index: int) -> str:
        return f"{array_id}_{index}"

    def base_id(self, job_id: str) -> str:
        return parse.base_id(job_id)

    def release_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["scontrol", "release", *job_ids]

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["scancel", *job_ids]

    def max_array_size(self) -> int:
        """The cluster's MaxArraySize: an array's indices must stay below it. Asked once."""
        with self.lock:
            if self._max_array_size is None:
                config = self.run(["scontrol", "show", "config"]).check(BackendUnavailableError, "reading config")
                match = _MAX_ARRAY.search(config.stdout)
                # Slurm's documented default when the line is absent.
                self._max_array_size = int(match[1]) if match else 1001
            return self._max_array_size

    # -- status -----------------------------------------------------------------------------

    @property
    def accounting(self) -> bool:
        """Whether ``sacct`` answers here; asked once, since it only changes with the cluster's setup."""
        with self.lock:
            if self._accounting is None:
                result = self.run(["sacct", "-n", "-X", "-j", "1", "-o", "JobID"])
                self._accounting = result.ok
                if not result.ok:
                    self.log.info("sacct unusable, polling with squeue and scontrol", answer=result.words[-300:])
            return self._accounting

    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        found: dict[str, JobStatus] = {}
        ended_arrays: dict[str, JobStatus] = {}
        if self.accounting:
            try:
                found, ended_arrays = self._sacct(job_ids)
            except BackendUnavailableError as exc:
                # slurmdbd went away after the probe: slurmctld still answers for this poll.
                self.log.warning("sacct failed, asking squeue and scontrol this time", error=str(exc)[-300:])
        missing = [job_id for job_id in job_ids if job_id not in found]
        if missing:
            found.update(self._squeue(missing))
        # slurmctld forgot them too: the array's own record is the last word left.
        statuses = {**ended_arrays, **found}
        killed = [job_id for job_id, status in statuses.items() if status.state is JobState.OUT_OF_MEMORY]
        if killed and self.accounting:
            statuses.update(self._memory_asked_and_used(killed, statuses))
        return statuses

    def _memory_asked_and_used(self, job_ids: list[str], statuses: Mapping[str, JobStatus]) -> dict[str, JobStatus]:
        """Jobs killed for memory, their reasons saying what they asked for and what Slurm saw them
        use (its sampled peak: a fast allocation is killed before a sample): one more sacct, of the
        jobs' steps, only in a poll that saw such an end."""
        argv = ["sacct", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobID,ReqMem,MaxRSS"]
        try:
            lines = self.run_query(argv, "reading memory use").splitlines()
        except BackendUnavailableError:
            return {}
        # What this client sent, where it did: slurmdbd's ReqMem of a job that ended fast can
        # still be unset (sacct prints it as ``16?``).
        sent = {
            job_id: _megabytes(resources.memory)
            for job_id in job_ids
            if (resources := self.resources_of(job_id)) is not None and resources.memory
        }
        asked: dict[str, str] = {}
        used: dict[str, int] = {}
        for fields in (line.split("|") for line in lines):
            if len(fields) != 3:
                continue
            job_id, _, step = fields[0].partition(".")
            if job_id in sent:
                asked[job_id] = sent[job_id]
            elif not step and parse.slurm_memory(fields[1]) is not None:
                asked[job_id] = fields[1]
            used[job_id] = max(used.get(job_id, 0), parse.slurm_memory(fields[2]) or 0)
        explained = {}
        for job_id in job_ids:
            if job_id in asked:
                said = f"asked {asked[job_id]}, Slurm's sampled peak {used[job_id] / 1024**2:.0f} MiB"
                reason = "; ".join(part for part in (statuses[job_id].reason, said) if part)
                explained[job_id] = attrs.evolve(statuses[job_id], reason=reason)
        return explained

    def _bases(self, job_ids: Sequence[str]) -> str:
        return ",".join(sorted({parse.base_id(job_id) for job_id in job_ids}, key=int))

    def _memory_limit(self, job_id: str) -> bool:
        resources = self.resources_of(job_id)
        return resources is not None and resources.memory is not None

    def _sacct(self, job_ids: Sequence[str]) -> tuple[dict[str, JobStatus], dict[str, JobStatus]]:
        """Each job's status from its own line or its pending array's; apart, the tasks only
        an ended array's line speaks for (squeue is asked about them first)."""
        argv = ["sacct", "-n", "-P", "-X", "-j", self._bases(job_ids), "-o", _SACCT_FIELDS]
        own: dict[str, list[str]] = {}
        ranges: list[tuple[list[str], list[str]]] = []
        for line in self.run_query(argv, "polling with sacct").splitlines():
            fields = line.split("|")
            if len(fields) != 5:
                continue
            ids = parse.expand_job_id(fields[0])
            if ids == [fields[0]]:
                own[fields[0]] = fields
            else:
                ranges.append((ids, fields))
        found = {}
        for job_id, (_, state, code, reason, nodes) in own.items():
            # slurmdbd lags slurmctld: a job squeue already showed running may still be
            # PENDING in sacct. Such a stale line is left out, so squeue answers for it.
            if not (state == "PENDING" and self.ledger.seen_running(job_id)):
                found[job_id] = parse.status(state, reason, code, nodes, self._memory_limit(job_id))
        # An array's own record keeps the index range it was submitted with (``7_[0-2%1]``) even
        # after tasks left it to start, and slurmdbd may not have a started task's own line yet:
        # when the rest of the array is cancelled, that range says CANCELLED of a running task.
        ended_arrays = {}
        for ids, (_, state, code, reason, nodes) in ranges:
            for job_id in ids:
                if job_id not in own:
                    status = parse.status(state, reason, code, nodes, self._memory_limit(job_id))
                    (ended_arrays if status.state.finished else found)[job_id] = status
        return found, ended_arrays

    def _squeue(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        argv = ["squeue", "-h", "-r", "-t", "all", "-j", self._bases(job_ids), "-o", _SQUEUE_FORMAT]
        found = {}
        for line in self.run_query(argv, "polling with squeue").splitlines():
            fields = line.split("|")
            if len(fields) != 4:
                continue
            job_id, state, reason, nodes = fields
            found[job_id] = parse.status(state, reason, "", nodes, self._memory_limit(job_id))
        # squeue has no exit code: ask scontrol, once per job (or array) that ended or is gone.
        ended = [j for j in job_ids if j not in found or (found[j].state.finished and found[j].exit_code is None)]
        for base in sorted({parse.base_id(job_id) for job_id in ended}, key=int):
            text = self.run_query(["scontrol", "-o", "show", "job", base], "asking scontrol")
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
        text = self.run_query(["scontrol", "-o", "show", "job", job_id], "asking scontrol")
        return parse.parse_scontrol(text).get(job_id)

    def job_in_queue(self, job_id: str) -> bool | None:
        return self.scontrol_record(self.scheduler_job(job_id)) is not None

    def job_allocation(self, job_id: str, meta: Mapping[str, Any] | None) -> Allocation | None:
        record = self.scontrol_record(self.scheduler_job(job_id))
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

    def job_metrics(self, job_id: str, meta: Mapping[str, Any] | None) -> JobMetrics | None:
        """sacct's record of the job and its steps; None where accounting is off or has no record.

        slurmdbd records a job's end and its batch step's usage a moment after slurmctld: the
        record is read again, for up to ``ACCOUNTING_WAIT`` seconds, until it shows the end,
        what was allocated and the ended batch step; after that, what it has.
        """
        if not self.accounting:
            return None
        job_id = self.scheduler_job(job_id)
        argv = ["sacct", "-n", "-P", "-j", job_id, "-o", _METRIC_FIELDS]
        deadline = time.monotonic() + ACCOUNTING_WAIT
        while True:
            rows = [line.split("|") for line in self.run_query(argv, "reading accounting").splitlines()]
            rows = [row for row in rows if len(row) == _METRIC_FIELDS.count(",") + 1]
            own = next((row for row in rows if row[0] == job_id), None)
            complete = (
                own is not None
                and _local_time(own[5]) is not None
                and "mem=" in own[9]
                and any(row[0] == f"{job_id}.batch" and _local_time(row[5]) is not None for row in rows)
            )
            if complete or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if own is None:
            return None
        _, state, code, submit, start, end, nodes, cpus, _, granted = own
        # MaxRSS is reported on the steps (batch, extern, srun steps), not on the job's own line.
        peaks = [parse.slurm_memory(row[8]) or 0 for row in rows]
        return JobMetrics(
            job_id=job_id,
            backend=self.config.backend,
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
