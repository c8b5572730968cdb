"""Reading Grid Engine's answers: ``qsub -terse`` ids, ``qstat -xml`` lists, ``qstat -j`` and ``qacct -j`` records.

Pure functions over the commands' text, so they are tested on output captured from the real
test cluster (tests/sge/samples) and the backend keeps only the talking to SGE.
"""

from __future__ import annotations

import datetime
import math
import re
import xml.etree.ElementTree as ElementTree

import attrs

from clustrix.state import JobState, JobStatus

_SUBMITTED = re.compile(r"^(\d+)(?:\.\d+-\d+:\d+)?$")
# qstat -j prints "error reason    1:      <date> [uid:pid]: error: ..." once per task in error.
_ERROR_REASON = re.compile(r"^error reason\s+\d+:\s*(.*)$", re.MULTILINE)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
# Upper-case units are powers of 1024, lower-case ones of 1000 (sge_types(1)); qacct prints KB, MB...
_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_DECIMAL = {"k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}
# qacct's "failed" codes that a kill, not the job itself, ended the job with.
QMASTER_LIMIT = 37
KILLED_AFTER_START = 100
# Letters of a qstat state that mean the job has started: running, transferring, suspended.
_STARTED = frozenset("rtsST")


def job_number(job_id: str) -> str:
    """``123`` for ``123`` and for the array task ``123.4``: what qacct and qstat -j take."""
    return job_id.split(".", 1)[0]


def submitted_id(stdout: str) -> str | None:
    """The job number from ``qsub -terse`` (``12`` or ``12.1-4:1`` for an array), past any warnings."""
    numbers = [m[1] for line in stdout.splitlines() if (m := _SUBMITTED.match(line.strip()))]
    return numbers[-1] if numbers else None


def task_ranges(text: str) -> tuple[tuple[int, int, int], ...]:
    """``2,3`` / ``4-10:2`` / ``1-3:1,5`` as ``(first, last, step)`` ranges."""
    ranges = []
    for part in text.split(","):
        span, _, step = part.strip().partition(":")
        first, _, last = span.partition("-")
        ranges.append((int(first), int(last or first), int(step or 1)))
    return tuple(ranges)


@attrs.frozen
class Listed:
    """One line of ``qstat -xml``: a job, or some tasks of an array, in one state."""

    number: str
    state: str
    queue: str = ""
    slots: int = 1
    # None for a job that is not an array; else the task ranges this line stands for.
    tasks: tuple[tuple[int, int, int], ...] | None = None
    # qstat's local time of submission (pending lines) or of the start (running lines).
    submitted: str = ""
    started: str = ""

    def has_task(self, task: int) -> bool:
        return any(first <= task <= last and (task - first) % step == 0 for first, last, step in self.tasks or ())

    @property
    def host(self) -> str:
        return self.queue.partition("@")[2]


def qstat_xml(text: str) -> dict[str, list[Listed]]:
    """``qstat -xml``'s jobs (running and pending), by job number."""
    # The scheduler's own command's output, read through our transport: not untrusted input.
    root = ElementTree.fromstring(text)  # noqa: S314
    jobs: dict[str, list[Listed]] = {}
    for element in root.iter("job_list"):

        def field(name: str, element: ElementTree.Element = element) -> str:
            return (element.findtext(name) or "").strip()

        tasks = field("tasks")
        listed = Listed(
            number=field("JB_job_number"),
            state=field("state"),
            queue=field("queue_name"),
            slots=int(field("slots") or 1),
            tasks=task_ranges(tasks) if tasks else None,
            submitted=field("JB_submission_time"),
            started=field("JAT_start_time"),
        )
        jobs.setdefault(listed.number, []).append(listed)
    return jobs


def find(jobs: dict[str, list[Listed]], job_id: str) -> Listed | None:
    """The line of ``qstat_xml`` that stands for ``job_id`` (``12`` or the array task ``12.3``)."""
    number, _, task = job_id.partition(".")
    for listed in jobs.get(number, ()):
        if (listed.tasks is None and not task) or (task and listed.tasks is not None and listed.has_task(int(task))):
            return listed
    return None


def listed_status(listed: Listed) -> JobStatus:
    """PENDING or RUNNING from qstat's state letters (``qw``, ``hqw``, ``r``, ``dr``, ``t``, ``Rr``...).

    Error states (``E``) are not decided here: the backend ends those jobs.
    """
    if _STARTED & set(listed.state):
        return JobStatus(
            JobState.RUNNING, reason="" if listed.state == "r" else f"SGE state {listed.state}", nodes=listed.host
        )
    reason = "held until the jobs it depends on complete" if "h" in listed.state else ""
    return JobStatus(JobState.PENDING, reason=reason or ("" if listed.state == "qw" else f"SGE state {listed.state}"))


def error_reasons(text: str) -> dict[str, str]:
    """What ``qstat -j`` says put each job into error state (``Eqw``), by job number."""
    reasons = {}
    for block in re.split(r"^=+$", text, flags=re.MULTILINE):
        number = re.search(r"^job_number:\s*(\d+)", block, re.MULTILINE)
        found = dict.fromkeys(reason.strip() for reason in _ERROR_REASON.findall(block))
        if number:
            reasons[number[1]] = "; ".join(found) or "no reason given"
    return reasons


def qstat_j(text: str) -> dict[str, str]:
    """The ``key: value`` lines of ``qstat -j`` for one job."""
    record = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key and not key.startswith(" "):
            record.setdefault(key.strip(), value.strip())
    return record


def qacct_records(text: str) -> list[dict[str, str]]:
    """Every record of ``qacct -j``, in the accounting file's order (oldest first)."""
    records: list[dict[str, str]] = []
    for line in text.splitlines():
        if line.startswith("====="):
            records.append({})
        elif records and line.strip():
            key, _, value = line.partition(" ")
            records[-1][key] = value.strip()
    return records


def record_id(record: dict[str, str]) -> str:
    """``12`` for a job, ``12.3`` for task 3 of an array."""
    task = record.get("taskid", "undefined")
    return record.get("jobnumber", "") + ("" if task == "undefined" else f".{task}")


def local_time(text: str) -> datetime.datetime | None:
    """qacct's ``Sun Nov 29 08:31:07 2026`` or qstat's ``2026-11-29T08:31:07`` (the cluster's local time)."""
    for parse in (datetime.datetime.fromisoformat, lambda t: datetime.datetime.strptime(t, "%a %b %d %H:%M:%S %Y")):
        try:
            return parse(text.strip())
        except ValueError:
            continue
    return None


def memory(text: str | None) -> int | None:
    """Bytes from SGE's sizes: requests (``200M``, ``1.5G``, ``500m``) and qacct's ``3.391MB``."""
    match = _SIZE.match(text or "")
    if not match:
        return None
    number, unit = float(match[1]), match[2]
    if unit in _DECIMAL:
        return math.ceil(number * _DECIMAL[unit])
    unit = unit.upper().removesuffix("B") if len(unit) == 2 else unit.upper()
    return math.ceil(number * _UNITS[unit]) if unit in _UNITS else None


def seconds(text: str | None) -> int | None:
    """Seconds from ``600``, ``0:10:0``, qacct's ``6s``; None for ``INFINITY`` and the like."""
    text = (text or "").strip().removesuffix("s")
    try:
        if ":" in text:
            hours, minutes, secs = (float(part or 0) for part in text.split(":"))
            return math.ceil(hours * 3600 + minutes * 60 + secs)
        return math.ceil(float(text))
    except (ValueError, OverflowError):  # OverflowError: "INFINITY" reads as a float
        return None


def requests(text: str) -> dict[str, str]:
    """``h_rt=600,h_vmem=200M`` (qstat -j's hard resource_list) as a dict."""
    return dict(part.split("=", 1) for part in text.split(",") if "=" in part)


def category(text: str) -> dict[str, str]:
    """qacct's ``category`` (``-q all.q -l h_rt=60,h_vmem=100M -pe smp 2``) by option; ``-pe`` keeps both words."""
    words = text.split()
    options: dict[str, str] = {}
    for i, word in enumerate(words):
        if word.startswith("-") and i + 1 < len(words):
            options[word] = " ".join(words[i + 1 : i + 3]) if word == "-pe" else words[i + 1]
    return options


def accounted_status(
    record: dict[str, str], time_limit: int | None, memory_limit: int | None, cancelled: bool
) -> JobStatus:
    """A finished job's status from its qacct record.

    ``failed`` 0 is the script's own end (its ``exit_status``); 37 is qmaster killing it at a
    limit (h_rt, h_cpu or h_vmem: which one, the job's usage against what it asked says);
    100 is a kill after the start (``qdel``, or execd at a limit); other codes mean SGE
    could not start the job (26: its output file, 28: its working directory...).
    """
    code_text, _, words = record.get("failed", "0").partition(":")
    code = int(code_text.strip() or 0)
    words = words.strip()
    exit_code = int(record.get("exit_status", "0").split()[0])
    node = record.get("hostname", "")
    wall = seconds(record.get("ru_wallclock"))
    peak = memory(record.get("maxvmem"))
    said = f"SGE: failed {code}{' ' + words if words else ''}, exit_status {exit_code}"
    if code == 0:
        if exit_code == 0:
            return JobStatus(JobState.COMPLETED, exit_code=0, nodes=node)
        reason = f"killed by signal {exit_code - 128}" if exit_code > 128 else "non-zero exit status"
        return JobStatus(JobState.FAILED, reason=reason, exit_code=exit_code, nodes=node)
    if code in (QMASTER_LIMIT, KILLED_AFTER_START):
        if cancelled and code == KILLED_AFTER_START:
            return JobStatus(JobState.CANCELLED, reason=f"deleted with qdel ({said})", exit_code=exit_code, nodes=node)
        if time_limit and wall is not None and wall >= time_limit - 1:
            return JobStatus(
                JobState.TIMEOUT, reason=f"killed at its h_rt limit ({said})", exit_code=exit_code, nodes=node
            )
        if memory_limit and ((peak or 0) >= memory_limit or code == QMASTER_LIMIT):
            return JobStatus(
                JobState.OUT_OF_MEMORY, reason=f"killed over its memory limit ({said})", exit_code=exit_code, nodes=node
            )
        if code == KILLED_AFTER_START:
            return JobStatus(JobState.CANCELLED, reason=f"deleted ({said})", exit_code=exit_code, nodes=node)
    return JobStatus(JobState.FAILED, reason=said, exit_code=exit_code, nodes=node)
