"""Reading Slurm's answers: job ids (array tasks and ranges), states, exit codes, ``scontrol -o`` records.

Pure functions over the commands' text, so they are tested on captured real output
and the backend keeps only the talking to Slurm.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from clustrix.errors import ConfigError
from clustrix.resources import parse_memory, parse_time
from clustrix.state import JobState, JobStatus

# Every job state Slurm documents (squeue/sacct/scontrol), mapped to the core's.
STATES: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "RESIZING": JobState.RUNNING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "NODE_FAIL": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED,
}

_ARRAY_RANGE = re.compile(r"^(?P<base>\d+)_\[(?P<spec>[^\]]+)\]$")
_SCONTROL_FIELD = re.compile(
    r"(?:^|\s)(JobId|ArrayJobId|ArrayTaskId|JobState|Reason|ExitCode|NodeList|Partition|TimeLimit|NumCPUs|TRES|AllocTRES)"
    r"=(\S*)"
)
KILLED_BY_SIGNAL_9 = 9


def base_id(job_id: str) -> str:
    """``123`` for ``123`` and for the array task ``123_4``: what Slurm's commands take."""
    return job_id.split("_", 1)[0]


def expand_task_spec(base: str, spec: str) -> Iterator[str]:
    """The task ids in an array's index list: ``0-3%2`` or ``5,7,9-11`` under ``base``."""
    for part in spec.split("%", 1)[0].split(","):
        first, _, last = part.partition("-")
        for index in range(int(first), int(last or first) + 1):
            yield f"{base}_{index}"


def expand_job_id(job_id: str) -> list[str]:
    """The ids one output line stands for: itself, or every task of a pending range ``123_[4-9%2]``."""
    match = _ARRAY_RANGE.match(job_id)
    if match is None:
        return [job_id]
    return list(expand_task_spec(match["base"], match["spec"]))


def exit_code(text: str) -> tuple[int | None, int]:
    """``(exit code, signal)`` from Slurm's ``code:signal``; the code is None when unreadable."""
    code, _, signal = text.partition(":")
    return (int(code) if code.isdigit() else None, int(signal) if signal.isdigit() else 0)


def status(state_text: str, reason: str, exit_text: str, nodes: str, memory_limited: bool) -> JobStatus:
    """A core status from Slurm's words. ``memory_limited``: the job was submitted with ``--mem``."""
    # sacct writes "CANCELLED by 0"; squeue may add a "+" for states with more to come.
    word = state_text.split(" ", 1)[0].rstrip("+")
    state = STATES.get(word)
    reason = "" if reason in ("None", "(null)") else reason
    nodes = "" if nodes in ("None assigned", "(null)") else nodes
    code, signal = exit_code(exit_text)
    if state is None:
        # A state this table does not know: keep waiting rather than declare an end.
        return JobStatus(JobState.RUNNING, reason=f"Slurm state {state_text}", nodes=nodes)
    if state is JobState.FAILED and signal == KILLED_BY_SIGNAL_9 and memory_limited:
        # Without cgroups, Slurm's OverMemoryKill SIGKILLs the job and reports FAILED 0:9
        # (Reason JobLaunchFailure) instead of OUT_OF_MEMORY.
        state = JobState.OUT_OF_MEMORY
        reason = f"killed by SIGKILL over its --mem limit (Slurm: FAILED {exit_text} {reason})"
    elif signal and state is not JobState.CANCELLED:
        reason = f"{reason} (signal {signal})".strip()
    if not reason and word != state.value:
        reason = word
    return JobStatus(state, reason=reason, exit_code=code if state.finished else None, nodes=nodes)


def parse_scontrol(text: str) -> dict[str, dict[str, str]]:
    """``scontrol -o show job`` records by job id (``base_index`` for array tasks, each task of a range)."""
    records: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        fields = dict(_SCONTROL_FIELD.findall(line))
        if "JobId" not in fields:
            continue
        if "ArrayTaskId" in fields and "ArrayJobId" in fields:
            for job_id in expand_task_spec(fields["ArrayJobId"], fields["ArrayTaskId"]):
                records[job_id] = fields
        else:
            records[fields["JobId"]] = fields
    return records


def tres(text: str) -> dict[str, str]:
    """``cpu=2,mem=300M,node=1`` as a dict."""
    return dict(part.split("=", 1) for part in text.split(",") if "=" in part)


def slurm_memory(text: str) -> int | None:
    """Bytes from Slurm's ``300M``, ``1.5G``, ``1234K`` (older versions add ``n``/``c``: per node/CPU).

    None for what is not a size: empty, or the ``16?`` sacct prints for a step it could not measure.
    """
    try:
        return parse_memory(text.rstrip("nc"))
    except ConfigError:
        return None


def slurm_time(text: str) -> int | None:
    """Seconds from Slurm's ``MM:SS``, ``HH:MM:SS``, ``D-HH:MM:SS``; None for ``UNLIMITED`` and the like."""
    if not text or not text[0].isdigit():
        return None
    days, _, clock = text.rpartition("-")
    parts = clock.split(":")
    while len(parts) < 3:
        parts.insert(0, "0")
    return parse_time(f"{days + '-' if days else ''}{parts[0]}:{parts[1]}:{parts[2]}")
