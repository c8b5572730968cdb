"""The ``sge`` backend: (Son of) Grid Engine's words for the core's batch-scheduler base.

Each call is a ``qsub -terse`` job script with ``#$`` directives; a batch of several calls
is one array job (``-t 1-N``, task ids ``JOB.TASK``). A poll is one ``qstat -xml`` for every
job; jobs that have left it are looked up with ``qacct -j``, once per job or array (all of
its tasks at once), for their exit status and SGE's failure code, at most
``MAX_QACCT_PER_POLL`` lookups a poll. A job in error state (``Eqw``) would wait forever:
it is deleted and ends FAILED with SGE's reason.

SGE has no "afterok": ``-hold_jid`` starts a dependant whatever its upstream's end. So a
dependant is submitted held (``-h``, plus ``-hold_jid`` naming what it waits for: the base
does this without ``has_afterok``) and the poll releases it with ``qrls`` once every job it
waits for COMPLETED, or deletes it with ``qdel`` (it ends CANCELLED, never having run) when
one ended otherwise. The release needs this client: dependants of a client that exited stay
held until ``qrls`` or ``qdel``.
"""

from __future__ import annotations

import functools
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from clustrix import convert
from clustrix.batch import BatchBackend
from clustrix.errors import ConfigError
from clustrix.records import Allocation, JobMetrics
from clustrix.spec import JobSpec
from clustrix.state import JobState, JobStatus
from clustrix_sge import parse

# Seconds a job may be gone from qstat before qacct has its record (SGE flushes accounting
# every flush_time, 15 s by default); after that it is UNKNOWN and the runner's record decides.
ACCOUNTING_GRACE = 60.0
# How long the validator's metrics wait for a record qacct does not have yet.
ACCOUNTING_WAIT = 10.0
MAX_QACCT_PER_POLL = 8
# Limits SGE applies per slot (queue_conf(5)): a job of N slots gets N times the value.
_PER_SLOT_LIMITS = frozenset({"h_vmem", "s_vmem", "h_rss", "s_rss", "h_data", "s_data", "h_stack", "s_stack"})
_MAX_AJ_TASKS = re.compile(r"^max_aj_tasks\s+(\d+)\s*$", re.MULTILINE)
# In -o/-e paths SGE splits host:path and path lists at ":" and ",", and expands $HOME, $USER,
# $JOB_ID, $JOB_NAME, $HOSTNAME and $TASK_ID; a line break ends a directive.
_PATH_UNSAFE = re.compile(r"[:,\x00-\x1f\x7f]|\$[A-Za-z_{]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _one_line(value: str) -> str:
    """``value`` as bash's ``$'...'``: byte-exact, with no line break a directive could start after."""
    if "\0" in value:
        raise ConfigError(f"env value {value!r}: an environment variable cannot hold a NUL character")
    escaped = "".join("\\" + ch if ch in "\\'" else f"\\x{ord(ch):02x}" if _CONTROL.match(ch) else ch for ch in value)
    return f"$'{escaped}'"


class SgeBackend(BatchBackend):
    """Grid Engine through qsub/qstat/qacct/qdel/qrls; job ids are SGE's (``12``, ``12.3`` for array tasks)."""

    options: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "parallel_environment": convert.word(
            "parallel_environment", r"[A-Za-z0-9_.-]+", "a parallel environment's name (letters, digits, _ . -)"
        ),
        "memory_resource": convert.word(
            "memory_resource", r"[A-Za-z_][A-Za-z0-9_]*", "a resource name such as h_vmem or mem_free"
        ),
        "array_throttle": convert.whole_number("array_throttle"),
        "sge_root": convert.string("sge_root", "the path of SGE_ROOT"),
        "sge_cell": convert.word("sge_cell", r"[A-Za-z0-9_.-]+", "a cell name (letters, digits, _ . -)"),
        "sge_qmaster_port": convert.whole_number("sge_qmaster_port", maximum=65535),
    }
    scheduler = "SGE"
    directive_prefix = "#$"
    job_id_expression = "$JOB_ID"
    task_id_expression = "${JOB_ID}.${SGE_TASK_ID}"
    task_index_variable = "SGE_TASK_ID"
    cores_variable = "NSLOTS"
    first_array_index = 1
    # qdel says "job 12 does not exist", qstat -j "Following jobs do not exist".
    unknown_job_words = ("does not exist", "do not exist")
    # qdel's words for jobs it deleted or that are already on their way out: nothing went wrong.
    finished_job_words = ("is already in deletion", "has registered the job", "has deleted job")
    hold_option = "-h"
    has_afterok = False
    unreachable_words = ("unable to contact qmaster", "unable to send message to qmaster", "commlib error")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_array: int | None = None
        self._consumable: bool | None = None
        # When qstat showed each job number pending: it tells our qacct record from an older job's
        # of the same number (numbers restart when a cluster is set up anew; accounting keeps both).
        self._submitted: dict[str, str] = {}
        self._missing_since: dict[str, float] = {}

    # -- the pieces of the batch base ------------------------------------------------------

    @functools.cached_property
    def workdir(self) -> str:
        path = self.transport.resolve(self.config.workdir)
        if _PATH_UNSAFE.search(path):
            raise ConfigError(
                f"workdir={path!r}: SGE reads ':' and ',' in output paths as host and list separators and "
                "expands $HOME-style names in them; choose a workdir without ':', ',', '$NAME' or line breaks"
            )
        return path

    def command_env(self) -> Mapping[str, str] | None:
        keys = {"sge_root": "SGE_ROOT", "sge_cell": "SGE_CELL", "sge_qmaster_port": "SGE_QMASTER_PORT"}
        env = {name: str(self.config.option(key)) for key, name in keys.items() if self.config.option(key)}
        return env or None

    def check_command(self) -> list[str]:
        return ["qconf", "-sss"]

    def check(self) -> str:
        return f"SGE qmaster answers (scheduler host {super().check()})"

    def job_name(self, spec: JobSpec) -> str:
        name = super().job_name(spec)
        # SGE refuses names that start with a digit ("not a valid object name").
        return name if not name[0].isdigit() else ("_" + name)[: self.name_limit]

    def setup_lines(self, spec: JobSpec) -> list[str]:
        # qsub reads a "#$" at the start of ANY line of the script as a directive, even one inside
        # a quoted value: values with line breaks become one-line $'...', and nothing else may
        # start a line with the prefix.
        one_line = {
            f"export {n}={shlex.quote(v)}": f"export {n}={_one_line(v)}" for n, v in spec.env if _CONTROL.search(v)
        }
        lines = [one_line.get(line, line) for line in super().setup_lines(spec)]
        for line in lines:
            if f"\n{self.directive_prefix}" in line or f"\r{self.directive_prefix}" in line:
                raise ConfigError(f"setup: {line!r}: SGE would read the '#$' after its line break as a directive")
        return lines

    def python_for(self, spec: JobSpec) -> str:
        python = super().python_for(spec)
        if _CONTROL.search(python):
            raise ConfigError(f"python={python!r}: a path with a line break would end the job script's line")
        return python

    def resource_options(self, spec: JobSpec, name: str) -> list[str]:
        resources = spec.resources
        if resources.gpus:
            raise ConfigError(f"gpus={resources.gpus}: SGE has no standard GPU request; pass your site's in extra")
        if resources.nodes > 1 or resources.tasks_per_node:
            raise ConfigError(
                "nodes/tasks_per_node: SGE places slots by the parallel environment's allocation rule; ask for "
                "cores with a parallel_environment that spans hosts"
            )
        # -S: run the script with the bash it names, whatever the queue's shell_start_mode; -cwd:
        # start where qsub ran, as Slurm jobs do (the client's directory, or the home over SSH).
        options = [f"-N {name}", "-S /bin/bash", "-cwd"]
        if resources.cores > 1:
            options.append(f"-pe {self.config.option('parallel_environment', 'smp')} {resources.cores}")
        limits = []
        if resources.time:
            limits.append(f"h_rt={resources.time}")
        if resources.memory:
            share = resources.cores if self.memory_per_slot() else 1
            limits.append(f"{self.memory_resource}={-(-resources.memory // (share * 1024**2))}M")
        if limits:
            options.append("-l " + ",".join(limits))
        if resources.queue:
            options.append(f"-q {resources.queue}")
        if resources.account:
            options.append(f"-P {resources.account}")
        return options

    def array_options(self, first: int, last: int) -> list[str]:
        throttle = self.config.option("array_throttle")
        return [f"-t {first}-{last}", *([f"-tc {throttle}"] if throttle else [])]

    def dependency_options(self, after: Sequence[str]) -> list[str]:
        """Held too (no ``has_afterok``) until the poll sees every job of ``after`` COMPLETED."""
        numbers = sorted({parse.job_number(job_id) for job_id in after}, key=int)
        return [f"-hold_jid {','.join(numbers)}"]

    def submit_command(self, script: str, stdout: str, stderr: str) -> list[str]:
        # Paths go on the command line (qsub opens them for appending), never through a script line.
        return ["qsub", "-terse", "-o", stdout, "-e", stderr, script]

    def parse_job_id(self, stdout: str) -> str | None:
        return parse.submitted_id(stdout)

    def task_id(self, array_id: str, index: int) -> str:
        return f"{array_id}.{index}"

    def base_id(self, job_id: str) -> str:
        return parse.job_number(job_id)

    def release_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["qrls", *sorted({parse.job_number(job_id) for job_id in job_ids}, key=int)]

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["qdel", *job_ids]

    def max_array_size(self) -> int | None:
        """The cluster's ``max_aj_tasks`` (0: no limit). Asked once."""
        with self.lock:
            if self._max_array is None:
                result = self.run(["qconf", "-sconf"])
                match = _MAX_AJ_TASKS.search(result.stdout) if result.ok else None
                # SGE's default when the configuration cannot be read.
                self._max_array = int(match[1]) if match else 75000
            return self._max_array or None

    @property
    def memory_resource(self) -> str:
        return self.config.option("memory_resource", "h_vmem")

    def memory_per_slot(self) -> bool:
        """Whether SGE counts ``memory_resource`` per slot: limits such as h_vmem, and consumables (``qconf -sc``)."""
        if self.memory_resource in _PER_SLOT_LIMITS:
            return True
        with self.lock:
            if self._consumable is None:
                result = self.run(["qconf", "-sc"])
                rows = [line.split() for line in result.stdout.splitlines()] if result.ok else []
                # name shortcut type relop requestable consumable default urgency; YES is per slot.
                self._consumable = any(len(r) > 5 and r[0] == self.memory_resource and r[5] == "YES" for r in rows)
            return self._consumable

    # -- status -------------------------------------------------------------------------------

    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        listed = parse.qstat_xml(self.run_query(["qstat", "-xml"], "polling with qstat"))
        found: dict[str, JobStatus] = {}
        errored: dict[str, str] = {}
        gone = []
        for job_id in job_ids:
            line = parse.find(listed, job_id)
            if line is None:
                gone.append(job_id)
            elif "E" in line.state:
                errored[job_id] = line.state
            else:
                found[job_id] = parse.listed_status(line)
                if line.submitted:
                    with self.lock:
                        self._submitted.setdefault(line.number, line.submitted)
        if errored:
            found.update(self._end_errored(errored))
        if gone:
            found.update(self._accounted(gone))
        with self.lock:
            for job_id, status in found.items():
                if status.state.finished:
                    self._missing_since.pop(job_id, None)
        return found

    def _end_errored(self, errored: Mapping[str, str]) -> dict[str, JobStatus]:
        """Jobs in error state never run by themselves: delete them, with SGE's reason as theirs."""
        numbers = sorted({parse.job_number(job_id) for job_id in errored}, key=int)
        reasons = parse.error_reasons(self.run(["qstat", "-j", ",".join(numbers)]).stdout)
        self.run(["qdel", *errored])
        self.log.warning("jobs in SGE error state deleted", jobs=list(errored), reasons=reasons)
        return {
            job_id: JobStatus(
                JobState.FAILED,
                reason=f"SGE put the job in error state ({state}), so it was deleted: "
                + reasons.get(parse.job_number(job_id), "no reason given"),
            )
            for job_id, state in errored.items()
        }

    def qacct(self, number: str) -> dict[str, dict[str, str]]:
        """qacct's records of job ``number`` (each task of an array), by job id; {} while it has none."""
        result = self.run(["qacct", "-j", number])
        if not result.ok:
            # "error: job id 12 not found" (not written yet, or deleted before it started).
            return {}
        with self.lock:
            submitted = parse.local_time(self._submitted.get(number, ""))
        chosen = {}
        for record in parse.qacct_records(result.stdout):
            if submitted is None or parse.local_time(record.get("qsub_time", "")) == submitted:
                chosen[parse.record_id(record)] = record  # the file is in time order: the last one wins
        return chosen

    def _accounted(self, gone: Sequence[str]) -> dict[str, JobStatus]:
        """Jobs no longer in qstat: their end from qacct, else what we know, else (after a grace) nothing."""
        numbers = sorted({parse.job_number(job_id) for job_id in gone}, key=int)[:MAX_QACCT_PER_POLL]
        records: dict[str, dict[str, str]] = {}
        for number in numbers:
            records.update(self.qacct(number))
        found: dict[str, JobStatus] = {}
        now = time.monotonic()
        for job_id in gone:
            record = records.get(job_id)
            cancelled = self.was_cancelled(job_id)
            doomed = self.held.why_cancelled(parse.job_number(job_id))
            if record is not None:
                resources = self.resources_of(job_id)
                time_limit, memory = (resources.time, resources.memory) if resources else (None, None)
                found[job_id] = parse.accounted_status(record, time_limit, memory, cancelled)
            elif cancelled:
                found[job_id] = JobStatus(
                    JobState.CANCELLED, reason=doomed or "deleted before it started (SGE keeps no accounting of it)"
                )
            elif parse.job_number(job_id) in numbers and now - self._missing_since.setdefault(job_id, now) > (
                ACCOUNTING_GRACE
            ):
                self.log.warning("job left qstat and qacct has no record of it", job_id=job_id)
            else:
                state = JobState.RUNNING if self.ledger.seen_running(job_id) else JobState.PENDING
                found[job_id] = JobStatus(state, reason="left the queue; waiting for its accounting record")
        self._find_memory_errors(found)
        return found

    def _find_memory_errors(self, found: dict[str, JobStatus]) -> None:
        """h_vmem is an address-space limit: Python raises MemoryError and exits 1, where the local
        backend says OUT_OF_MEMORY too. Told by the end record, for failed jobs of one call that asked
        for memory (in a chunk, the calls before the one that raised keep their values)."""
        candidates = []
        for job_id, status in found.items():
            resources = self.resources_of(job_id)
            memory_asked = resources is not None and resources.memory is not None
            one_call = len(self.ledger.directories(job_id) or []) == 1
            if status.state is JobState.FAILED and status.exit_code == 1 and memory_asked and one_call:
                candidates.append(job_id)
        for job_id, record in (self.end_records(candidates) if candidates else {}).items():
            if record.error == "builtins.MemoryError":
                found[job_id] = JobStatus(
                    JobState.OUT_OF_MEMORY,
                    reason=f"MemoryError under its {self.memory_resource} limit (an address-space rlimit)",
                    exit_code=1,
                    nodes=found[job_id].nodes,
                )

    # -- what the validator asks ----------------------------------------------------------------

    def job_in_queue(self, job_id: str) -> bool | None:
        """Whether SGE lists the job (``qstat -j``) or has accounted for it (``qacct``)."""
        job_id = self.scheduler_job(job_id)
        return self.run(["qstat", "-j", parse.job_number(job_id)]).ok or job_id in self.qacct(parse.job_number(job_id))

    def accounting_record(self, job_id: str, wait: float = ACCOUNTING_WAIT) -> dict[str, str] | None:
        deadline = time.monotonic() + wait
        while (record := self.qacct(parse.job_number(job_id)).get(job_id)) is None and time.monotonic() < deadline:
            time.sleep(0.5)
        return record

    def _granted_memory(self, limits: Mapping[str, str], slots: int) -> int | None:
        value = parse.memory(limits.get(self.memory_resource))
        return value * (slots if self.memory_per_slot() else 1) if value else None

    def job_allocation(self, job_id: str, meta: Mapping[str, Any] | None) -> Allocation | None:
        """What SGE granted: ``qstat -xml`` + ``qstat -j`` while the job runs, its qacct record after it ended."""
        job_id = self.scheduler_job(job_id)
        line = parse.find(parse.qstat_xml(self.run_query(["qstat", "-xml"], "asking qstat")), job_id)
        running = line is not None and parse.listed_status(line).state is JobState.RUNNING
        # A job that ends between the two queries is gone from qstat -j: its qacct record answers.
        detail = {}
        if running:
            detail = parse.qstat_j(self.run_query(["qstat", "-j", parse.job_number(job_id)], "asking qstat -j"))
        if line is not None and detail:
            limits = parse.requests(detail.get("hard resource_list", ""))
            slots, queue, host = line.slots, line.queue.partition("@")[0], line.host
        else:
            record = self.accounting_record(job_id)
            if record is None:
                return None
            limits = parse.requests(parse.category(record.get("category", "")).get("-l", ""))
            slots, queue, host = int(record.get("slots") or 1), record.get("qname"), record.get("hostname", "")
        return Allocation(
            cores=slots,
            memory=self._granted_memory(limits, slots),
            time_limit=parse.seconds(limits.get("h_rt")),
            queue=queue,
            nodes=(host,) if host else (),
        )

    def job_metrics(self, job_id: str, meta: Mapping[str, Any] | None) -> JobMetrics | None:
        """qacct's record: times, exit status, host, slots, the memory limit granted, peak virtual memory."""
        job_id = self.scheduler_job(job_id)
        # A job that never ran (no runner record) will get no accounting record: do not wait for one.
        record = self.accounting_record(job_id, ACCOUNTING_WAIT if meta is not None else 0.0)
        if record is None:
            return None
        resources = self.resources_of(job_id)
        time_limit, memory = (resources.time, resources.memory) if resources else (None, None)
        slots = int(record.get("slots") or 1)
        limits = parse.requests(parse.category(record.get("category", "")).get("-l", ""))

        def when(key: str) -> Any:
            moment = parse.local_time(record.get(key, ""))
            return moment.astimezone() if moment else None

        return JobMetrics(
            job_id=job_id,
            backend=self.config.backend,
            state=parse.accounted_status(record, time_limit, memory, self.was_cancelled(job_id)).state.value,
            submitted_at=when("qsub_time"),
            started_at=when("start_time"),
            ended_at=when("end_time"),
            exit_code=int(record.get("exit_status", "0").split()[0]),
            nodes=(record["hostname"],) if record.get("hostname") else (),
            allocated_cores=slots,
            allocated_memory=self._granted_memory(limits, slots),
            peak_memory=parse.memory(record.get("maxvmem")) or None,
            source="qacct",
        )
