"""Reading PBS's answers in both dialects: ``qstat -f`` text (Torque), ``qstat -x -f -F json`` (PBS Pro),
job ids of array tasks, and what a finished job's record (and the job's own record) says about its end.

Pure functions over the commands' text, tested on captured output: the Torque dialect on
what the real test cluster printed, PBS Pro on samples from its documentation.
"""

from __future__ import annotations

import collections
import datetime
import json
import re
from collections.abc import Mapping, Sequence

from clustrix.endrecord import EndRecord
from clustrix.errors import ConfigError
from clustrix.resources import parse_memory
from clustrix.state import JobState, JobStatus

PRO = "pro"
TORQUE = "torque"

# One-letter job states (qstat(1B) of both), mapped to the core's; None: the job ended.
STATES: dict[str, dict[str, JobState | None]] = {
    TORQUE: {
        "Q": JobState.PENDING,
        "H": JobState.PENDING,
        "W": JobState.PENDING,
        "T": JobState.PENDING,
        "R": JobState.RUNNING,
        "E": JobState.RUNNING,
        "S": JobState.RUNNING,
        "C": None,
        # Not Torque's own: Slurm's Torque wrapper says U for the Slurm states it has no letter for,
        # all of them ends (OUT_OF_MEMORY, DEADLINE).
        "U": None,
    },
    PRO: {
        "Q": JobState.PENDING,
        "H": JobState.PENDING,
        "W": JobState.PENDING,
        "T": JobState.PENDING,
        "B": JobState.RUNNING,
        "R": JobState.RUNNING,
        "E": JobState.RUNNING,
        "S": JobState.RUNNING,
        "U": JobState.RUNNING,
        "F": None,
        "X": None,
    },
}

# Exit statuses the scheduler itself sets (negative: JOB_EXEC_* of the mom), by dialect: PBS Pro's
# JOB_EXEC_KILL_* (-24..-29) and Torque 6's JOB_EXEC_OVERLIMIT_* (-10..-12).
KILLS: dict[str, dict[int, tuple[JobState, str]]] = {
    PRO: {
        -24: (JobState.FAILED, "killed for using more CPUs than requested (JOB_EXEC_KILL_NCPUS_BURST)"),
        -25: (JobState.FAILED, "killed for using more CPUs than requested (JOB_EXEC_KILL_NCPUS_SUM)"),
        -26: (JobState.OUT_OF_MEMORY, "killed over its vmem limit (JOB_EXEC_KILL_VMEM)"),
        -27: (JobState.OUT_OF_MEMORY, "killed over its mem limit (JOB_EXEC_KILL_MEM)"),
        -28: (JobState.TIMEOUT, "killed over its cput limit (JOB_EXEC_KILL_CPUT)"),
        -29: (JobState.TIMEOUT, "killed over its walltime (JOB_EXEC_KILL_WALLTIME)"),
    },
    TORQUE: {
        -10: (JobState.OUT_OF_MEMORY, "killed over its memory limit (JOB_EXEC_OVERLIMIT_MEM)"),
        -11: (JobState.TIMEOUT, "killed over its walltime (JOB_EXEC_OVERLIMIT_WT)"),
        -12: (JobState.TIMEOUT, "killed over its cput limit (JOB_EXEC_OVERLIMIT_CPUT)"),
    },
}
# PBS reports a job killed by signal N as 256 + N (a shell would say 128 + N).
SIGNAL_BASE = 256
SIGKILL = 9
# PBS Pro's substate of a finished job that was deleted (JOB_SUBSTATE_TERMINATED): its Exit_status
# is whatever the killed job script returned (0 when its TERM trap exits cleanly), so only this
# says that it was cancelled; 92 is FINISHED, 93 FAILED.
PRO_TERMINATED = "91"

_ATTRIBUTE = re.compile(r"^\s+([A-Za-z_][A-Za-z0-9_.]*) = ?(.*)$")
_JOB_ID = re.compile(r"^Job Id:\s*(\S+)\s*$")
_TASK = re.compile(r"\[(\d+)\]")
# An array task as the Torque dialect of Slurm's wrapper names it (no server, no id of its own).
_BARE_TASK = re.compile(r"^(\d+)\[(\d+)\]$")
SCHEDULER_ID = re.compile(r"^[A-Za-z0-9_.@\[\]-]+$")


def base_id(job_id: str) -> str:
    """The array a task belongs to (``123[].srv`` for ``123[4].srv``, ``123`` for ``123[4]``), else the job."""
    base = _TASK.sub("[]", job_id, count=1)
    return base[:-2] if base.endswith("[]") else base


def task_id(array_id: str, index: int) -> str:
    """``123[4].srv`` from qsub's ``123[].srv`` (PBS Pro, Torque); ``123[4]`` from the wrapper's bare ``123``."""
    return array_id.replace("[]", f"[{index}]", 1) if "[]" in array_id else f"{array_id}[{index}]"


def task_index(job_id: str) -> int | None:
    """The index of an array task (``4`` for ``123[4].srv`` and ``123[4]``); None for any other id."""
    match = _TASK.search(job_id)
    return int(match[1]) if match else None


def arrays_for_subjobs(ids: Sequence[str]) -> list[str]:
    """``ids`` with the subjobs (``123[4].srv``) of an array asked about more than once replaced by that
    array (``123[].srv``): ``qstat -t`` lists its subjobs, in one command however many a map's workers
    are, where naming each made a command line of thousands that OpenPBS took minutes to answer."""
    arrays = collections.Counter(base_id(job_id) for job_id in ids if base_id(job_id) != job_id)
    return sorted({base_id(job_id) if arrays[base_id(job_id)] > 1 else job_id for job_id in ids})


def bare_task(job_id: str) -> tuple[str, int] | None:
    """``(array, index)`` for a task id that qstat cannot be asked about by name (``123[4]``), else None."""
    match = _BARE_TASK.match(job_id)
    return (match[1], int(match[2])) if match else None


def parse_full(text: str) -> dict[str, dict[str, str]]:
    """``qstat -f`` records (Torque's text format) by job id; wrapped long values are joined."""
    records: dict[str, dict[str, str]] = {}
    record: dict[str, str] | None = None
    last = ""
    for line in text.splitlines():
        if match := _JOB_ID.match(line):
            record = records.setdefault(match[1], {})
            last = ""
        elif record is not None and (match := _ATTRIBUTE.match(line)):
            last = match[1]
            record[last] = match[2].strip()
        elif record is not None and last and line[:1].isspace() and line.strip():
            record[last] += line.strip()
    return records


def parse_json(text: str) -> dict[str, dict[str, str]]:
    """``qstat -f -F json`` records (PBS Pro) by job id, nested tables flattened to ``Resource_List.mem``."""
    start = text.find("{")
    data = json.loads(text[start:]) if start >= 0 else {}
    records = {}
    for job_id, attributes in (data.get("Jobs") or {}).items():
        flat: dict[str, str] = {}
        for name, value in attributes.items():
            if isinstance(value, dict):
                flat.update({f"{name}.{key}": str(item) for key, item in value.items()})
            else:
                flat[name] = str(value)
        records[job_id] = flat
    return records


def detect_dialect(version_output: str) -> str | None:
    """The dialect from ``qstat --version``: PBS Pro says ``pbs_version = ``, Torque ``Version: ``;
    Slurm's Torque-compatible wrapper has no such option (``Unknown option: version``)."""
    if "pbs_version" in version_output:
        return PRO
    if re.search(r"(?m)^\s*Version:", version_output) or "Unknown option: version" in version_output:
        return TORQUE
    return None


def duration(text: str | None) -> int | None:
    """Seconds from PBS's ``HH:MM:SS`` (hours may pass 24), ``D:HH:MM:SS``, ``MM:SS`` or plain seconds."""
    if not text:
        return None
    parts = text.split(":")
    if not all(part.isdigit() for part in parts) or len(parts) > 4:
        return None
    seconds = 0
    for part, unit in zip(reversed(parts), (1, 60, 3600, 86400), strict=False):
        seconds += int(part) * unit
    return seconds


def memory(text: str | None) -> int | None:
    """Bytes from PBS's sizes (``150mb``, ``4194304kb``, ``8gb``: binary units); None for what is not one."""
    if not text:
        return None
    try:
        return parse_memory(text)
    except ConfigError:
        return None


def timestamp(text: str | None) -> datetime.datetime | None:
    """A record's time: ``Sun Nov 29 08:34:31 2026`` (the server's local time) or seconds since the epoch."""
    if not text:
        return None
    if text.isdigit():
        return datetime.datetime.fromtimestamp(int(text)).astimezone()
    try:
        return datetime.datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y").astimezone()
    except ValueError:
        return None


def started(record: Mapping[str, str]) -> datetime.datetime | None:
    """When the job started: PBS Pro's ``stime``, Torque's ``start_time``, else the wrapper's ``mtime``."""
    for key in ("stime", "start_time"):
        if when := timestamp(record.get(key)):
            return when
    # Slurm's wrapper (no etime) prints its start as mtime, and an mtime for a job deleted while
    # queued too: only one given a node (exec_host) has run.
    wrapper = "etime" not in record and "exec_host" in record
    return timestamp(record.get("mtime")) if wrapper else None


def ended(record: Mapping[str, str]) -> datetime.datetime | None:
    """When a finished job ended: PBS Pro's ``obittime``, Torque's ``comp_time``, else the wrapper's ``ctime``."""
    for key in ("obittime", "comp_time"):
        if when := timestamp(record.get(key)):
            return when
    # Only Slurm's wrapper writes the end into ctime (real PBS: the creation time); it has no etime.
    return timestamp(record.get("ctime")) if "etime" not in record else None


def elapsed(record: Mapping[str, str]) -> int | None:
    """Seconds the job ran: ``resources_used.walltime`` where PBS keeps it, else end minus start."""
    used = duration(record.get("resources_used.walltime"))
    if used is not None:
        return used
    start, end = started(record), ended(record)
    return int((end - start).total_seconds()) if start and end else None


def exit_status(record: Mapping[str, str]) -> int | None:
    """``Exit_status`` (PBS Pro) or ``exit_status`` (Torque); None where the scheduler keeps none."""
    text = record.get("Exit_status", record.get("exit_status", ""))
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def nodes(record: Mapping[str, str]) -> str:
    """Host names from ``exec_host`` (``vm/1``, ``n1/0*2+n2/0*2``), comma-joined."""
    hosts = [part.split("/", 1)[0] for part in record.get("exec_host", "").split("+") if part]
    return ",".join(dict.fromkeys(hosts))


def status(record: Mapping[str, str], dialect: str) -> JobStatus | None:
    """The status of a job the scheduler still runs or queues; None when its record says it ended."""
    letter = record.get("job_state", "")
    state = STATES[dialect].get(letter, JobState.RUNNING)
    if state is None:
        return None
    reason = record.get("comment", "") if letter in STATES[dialect] else f"PBS state {letter}"
    return JobStatus(state, reason=reason, nodes=nodes(record))


def _killed_at_memory_limit(record: Mapping[str, str], code: int) -> str | None:
    """Why a SIGKILLed job was killed for memory, if PBS says it used all it asked (a mom's cgroup
    kills inside the limit and leaves JOB_EXEC_KILL_MEM to its own polling, too late for it)."""
    asked, used = memory(record.get("Resource_List.mem")), memory(record.get("resources_used.mem"))
    if code not in (128 + SIGKILL, SIGNAL_BASE + SIGKILL) or not asked or used is None or used < asked:
        return None
    return (
        f"killed at its memory limit: PBS counted {record['resources_used.mem']} used "
        f"of the {record['Resource_List.mem']} asked"
    )


def final_status(
    record: Mapping[str, str] | None,
    dialect: str,
    own: EndRecord,
    *,
    cancelled: bool,
    memory_limited: bool,
) -> JobStatus:
    """How a finished job ended: from the scheduler's exit status where it keeps one, otherwise
    from the job's own record (the runner's result, the script's exit) and the scheduler's times.

    ``record`` is None for an array task the scheduler never showed (it ended before it started).
    """
    record = record or {}
    where = nodes(record)
    code = exit_status(record)
    limit = duration(record.get("Resource_List.walltime"))
    ran = elapsed(record)
    over_time = limit is not None and ran is not None and ran >= limit
    if dialect == PRO and record.get("substate") == PRO_TERMINATED:
        # Deleted, by this client or anyone else: its exit status says nothing.
        return JobStatus(JobState.CANCELLED, reason=record.get("comment") or "deleted (qdel)", nodes=where)
    if cancelled and own.runner_returned is not True:
        # Deleted by this client before its call returned: PBS Pro may record it FINISHED with
        # Exit_status 0 all the same (a qdel racing the job's start loses its "terminated").
        return JobStatus(JobState.CANCELLED, reason="cancelled (qdel)", nodes=where)
    if own.memory_kills and own.script_exit and own.runner_returned is not True:
        # The kernel killed the runner at the job's cgroup memory limit (a worker whose call it
        # killed ends 0: the call's own record says so).
        kills = f"{own.memory_kills} process{'es' if own.memory_kills > 1 else ''}"
        return JobStatus(
            JobState.OUT_OF_MEMORY,
            reason=f"the kernel killed {kills} of the job for memory (its cgroup's oom_kill count)",
            exit_code=code if code is not None else own.script_exit,
            nodes=where,
        )
    if dialect == PRO and record and "exec_host" not in record:
        # Never given a node: deleted while it waited (PBS Pro then records a subjob "finished"
        # with Exit_status 0; its stime is its array's).
        return JobStatus(JobState.CANCELLED, reason=f"ended before it ran: {record.get('comment', '')}".rstrip(": "))
    if code is not None:
        if code == 0:
            return JobStatus(JobState.COMPLETED, exit_code=0, nodes=where)
        if code in KILLS[dialect]:
            state, reason = KILLS[dialect][code]
            return JobStatus(state, reason=reason, exit_code=code, nodes=where)
        if over_memory := _killed_at_memory_limit(record, code):
            return JobStatus(JobState.OUT_OF_MEMORY, reason=over_memory, exit_code=code, nodes=where)
        if code > SIGNAL_BASE:
            signal = code - SIGNAL_BASE
            state = JobState.CANCELLED if cancelled else JobState.TIMEOUT if over_time else JobState.FAILED
            return JobStatus(state, reason=f"killed by signal {signal}", exit_code=code, nodes=where)
        if code < 0:
            return JobStatus(JobState.FAILED, reason=f"PBS could not run the job (JOB_EXEC code {code})", nodes=where)
        return JobStatus(JobState.CANCELLED if cancelled else JobState.FAILED, exit_code=code, nodes=where)
    # No exit status kept (Torque without keep_completed's exit_status, Slurm's wrapper).
    if own.runner_returned is not None:
        code = 0 if own.runner_returned else 1
        state = JobState.COMPLETED if own.runner_returned else JobState.FAILED
        return JobStatus(state, reason="exit status from the runner's own record", exit_code=code, nodes=where)
    if not record or started(record) is None:
        return JobStatus(JobState.CANCELLED, reason="ended before it started (deleted by PBS or an admin)")
    if over_time:
        return JobStatus(JobState.TIMEOUT, reason=f"ran {ran} s of its {limit} s walltime", nodes=where)
    if own.script_exit:
        return JobStatus(JobState.FAILED, reason="exit status from the job script", exit_code=own.script_exit)
    if own.script_exit == 0:
        # The script's EXIT trap ran, but the runner did not finish: the job got a SIGTERM.
        return JobStatus(JobState.CANCELLED, reason="terminated by a signal from outside clustrix", nodes=where)
    if memory_limited:
        # The whole job, shell included, was SIGKILLed: what a memory limit's enforcement does.
        return JobStatus(JobState.OUT_OF_MEMORY, reason="killed outright under a memory limit", nodes=where)
    return JobStatus(JobState.FAILED, reason="ended without an exit status or the runner's record", nodes=where)
