"""The SGE plugin's readers on output captured from the real test cluster (tests/sge/samples, SGE 8.1.9).

The real-world tests run the same code against the live cluster; these pin what is hard to
provoke there at will or to see at the right moment: array tasks split over running and
pending lines, hold and error states, every ``failed`` code we map, and SGE's units.
Job numbers are read from the samples' MANIFEST, so re-recorded samples keep these tests valid.
"""

from __future__ import annotations

import csv
import datetime
import re
from pathlib import Path

import pytest

from clustrix import JobState
from clustrix_sge import parse

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def recorded_id(name: str) -> str:
    """The job number the sample's command was run on (``qstat -j 30`` -> ``30``)."""
    with open(SAMPLES / "MANIFEST.tsv", newline="") as f:
        command = next(row["command"] for row in csv.DictReader(f, delimiter="\t") if row["file"] == name)
    return command.split()[-1].split("\\,")[0]


RUNNING, ARRAY = recorded_id("qstat-j-running.txt"), recorded_id("qstat-j-array.txt")
PENDING, HELD = recorded_id("qstat-j-pending.txt"), recorded_id("qstat-j-held.txt")


def test_qsub_terse_gives_the_job_number_of_a_job_and_of_an_array():
    assert parse.submitted_id(sample("qsub-terse.txt")) == RUNNING
    assert parse.submitted_id(sample("qsub-terse-array.txt")) == ARRAY
    # qsub prints warnings on stdout before the id (seen with a directive given twice).
    assert parse.submitted_id('warning: "-N" option has already been set\n73\n') == "73"
    assert parse.submitted_id("Your job 73 has been submitted\n") is None


def test_qstat_xml_running_job_array_tasks_pending_and_held():
    listed = parse.qstat_xml(sample("qstat-xml-running-pending-array.xml"))
    running = parse.find(listed, RUNNING)
    assert running is not None and running.queue == "all.q@vm" and running.host == "vm"
    assert parse.listed_status(running).state is JobState.RUNNING
    assert parse.listed_status(running).nodes == "vm"
    # Task 1 started (its own line); tasks 2 and 3 pending on one line "2,3".
    assert parse.listed_status(parse.find(listed, f"{ARRAY}.1")).state is JobState.RUNNING
    for task in (2, 3):
        assert parse.listed_status(parse.find(listed, f"{ARRAY}.{task}")).state is JobState.PENDING
    assert parse.find(listed, f"{ARRAY}.4") is None
    assert parse.find(listed, ARRAY) is None, "an array's number alone is no job of ours"
    assert parse.listed_status(parse.find(listed, PENDING)).state is JobState.PENDING
    held = parse.listed_status(parse.find(listed, HELD))
    assert held.state is JobState.PENDING and "held" in held.reason
    # Pending lines carry the submission time qacct's record is matched with.
    assert parse.find(listed, PENDING).submitted.startswith("20")
    assert parse.qstat_xml(sample("qstat-xml-empty.xml")) == {}


def test_pending_task_ranges_and_state_letters():
    listed = parse.Listed(number="7", state="qw", tasks=parse.task_ranges("4-10:2,13"))
    assert [t for t in range(15) if listed.has_task(t)] == [4, 6, 8, 10, 13]
    for letters, state in [("t", JobState.RUNNING), ("dr", JobState.RUNNING), ("Rr", JobState.RUNNING),
                           ("S", JobState.RUNNING), ("hqw", JobState.PENDING), ("Rq", JobState.PENDING)]:  # fmt: skip
        assert parse.listed_status(parse.Listed(number="7", state=letters)).state is state, letters


def test_error_state_and_its_reason():
    listed = parse.qstat_xml(sample("qstat-xml-eqw.xml"))
    eqw = recorded_id("qstat-j-eqw.txt")
    assert parse.find(listed, eqw).state == "Eqw"
    reasons = parse.error_reasons(sample("qstat-j-eqw.txt"))
    assert "can't open output file" in reasons[eqw]
    several = parse.error_reasons(sample("qstat-j-several.txt"))
    assert set(several) == {RUNNING, PENDING} and several[RUNNING] == "no reason given"


def test_qstat_j_requests_of_a_running_job():
    record = parse.qstat_j(sample("qstat-j-running.txt"))
    assert record["job_number"] == RUNNING
    limits = parse.requests(record["hard resource_list"])
    assert parse.seconds(limits["h_rt"]) == 600 and parse.memory(limits["h_vmem"]) == 200 * 1024**2


def accounted(name: str, **kwargs) -> list:
    records = parse.qacct_records(sample(name))
    assert records, name
    options = {"time_limit": None, "memory_limit": None, "cancelled": False, **kwargs}
    return [(parse.record_id(r), parse.accounted_status(r, **options)) for r in records]


def test_qacct_ends():
    [(job_id, done)] = accounted("qacct-j-completed.txt")
    assert job_id == recorded_id("qacct-j-completed.txt")
    assert (done.state, done.exit_code, done.nodes) == (JobState.COMPLETED, 0, "vm")
    [(_, exit3)] = accounted("qacct-j-exit3.txt")
    assert (exit3.state, exit3.exit_code) == (JobState.FAILED, 3)
    # h_rt=5 exceeded: failed 37, and the wallclock says it was the time.
    [(_, timeout)] = accounted("qacct-j-h_rt-killed.txt", time_limit=5)
    assert timeout.state is JobState.TIMEOUT and "failed 37" in timeout.reason and timeout.exit_code == 137
    # qdel of a running job: failed 100; ours -> CANCELLED, someone else's -> CANCELLED too.
    [(_, deleted)] = accounted("qacct-j-qdel-running.txt", cancelled=True, time_limit=600)
    assert deleted.state is JobState.CANCELLED and "qdel" in deleted.reason
    [(_, by_someone)] = accounted("qacct-j-qdel-running.txt", time_limit=600, memory_limit=200 * 1024**2)
    assert by_someone.state is JobState.CANCELLED
    # MemoryError under h_vmem: the script's own exit 1 (the backend reads stderr for MemoryError).
    [(_, memory_error)] = accounted("qacct-j-h_vmem-exceeded.txt", memory_limit=200 * 1024**2)
    assert (memory_error.state, memory_error.exit_code) == (JobState.FAILED, 1)


def test_qacct_kill_at_a_limit_without_time_evidence_is_memory():
    record = parse.qacct_records(sample("qacct-j-h_rt-killed.txt"))[0]
    # Killed at 37 after 6 s, but it asked for 60 s and 100 MB: the limit it hit was h_vmem.
    status = parse.accounted_status(record, time_limit=60, memory_limit=100 * 1024**2, cancelled=False)
    assert status.state is JobState.OUT_OF_MEMORY
    # Asked for nothing: SGE's words, FAILED.
    assert parse.accounted_status(record, None, None, cancelled=False).state is JobState.FAILED


def test_qacct_arrays_one_record_per_task_and_failures_before_the_start():
    array = recorded_id("qacct-j-array-completed.txt")
    records = accounted("qacct-j-array-completed.txt")
    assert [job_id for job_id, _ in records] == [f"{array}.1", f"{array}.2"]
    assert all(status.state is JobState.COMPLETED for _, status in records)
    # A deleted array: only the task that had started has a record.
    deleted = recorded_id("qacct-j-qdel-array.txt")
    assert [job_id for job_id, _ in accounted("qacct-j-qdel-array.txt", cancelled=True)] == [f"{deleted}.1"]
    assert parse.qacct_records(sample("qacct-j-qdel-pending.txt")) == []
    record = {**parse.qacct_records(sample("qacct-j-completed.txt"))[0], "failed": "26  : opening input/output file"}
    could_not_start = parse.accounted_status(record, None, None, cancelled=False)
    assert could_not_start.state is JobState.FAILED and "opening input/output file" in could_not_start.reason


def test_qacct_submission_time_matches_qstat_s():
    # What tells our record from an older job's of the same number: the same second, two formats.
    listed = parse.qstat_xml(sample("qstat-xml-running-pending-array.xml"))
    pending = parse.find(listed, f"{ARRAY}.2")
    record = parse.qacct_records(sample("qacct-j-qdel-array.txt"))[0]
    assert parse.local_time(pending.submitted) == parse.local_time(record["qsub_time"])
    assert parse.local_time("Sun Nov 29 08:31:55 2026") == datetime.datetime(2026, 11, 29, 8, 31, 55)
    assert parse.local_time("-/-") is None


@pytest.mark.parametrize(
    ("text", "size"),
    [("200M", 200 * 1024**2), ("1.5G", 1536 * 1024**2), ("500m", 500 * 10**6), ("3.391MB", 3555722),
     ("0.000B", 0), ("512.000KB", 512 * 1024), ("2K", 2048), ("INFINITY", None), ("", None)],
)  # fmt: skip
def test_sizes(text, size):
    assert parse.memory(text) == size


def test_times_and_categories():
    assert [parse.seconds(t) for t in ("600", "0:10:0", "6s", "1:00:00", "INFINITY")] == [600, 600, 6, 3600, None]
    record = parse.qacct_records(sample("qacct-j-qdel-running.txt"))[0]
    category = parse.category(record["category"])
    assert category["-pe"] == "smp 1"
    assert parse.requests(category["-l"]) == {"h_rt": "600", "h_vmem": "200M"}
    assert parse.category("-q all.q -l h_rt=60,h_vmem=100M -pe smp 2 -P lab") == {
        "-q": "all.q",
        "-l": "h_rt=60,h_vmem=100M",
        "-pe": "smp 2",
        "-P": "lab",
    }


def test_an_older_jobs_record_of_the_same_number_is_never_taken_for_ours():
    # Job numbers restart when a cluster is set up anew, and the accounting file keeps the old
    # records: qacct -j N then prints both. The backend keeps the one submitted when qstat showed.
    from clustrix.config import ClusterConfig
    from clustrix_sge.backend import SgeBackend
    from tests.golden import RecordingTransport

    ours = sample("qacct-j-completed.txt")
    number = recorded_id("qacct-j-completed.txt")
    older = re.sub(r"(?m)^qsub_time .*$", "qsub_time    Sat Nov 28 10:00:00 2026", ours)
    older = re.sub(r"(?m)^exit_status .*$", "exit_status  3", older)
    submitted = parse.local_time(parse.qacct_records(ours)[0]["qsub_time"]).isoformat()

    def backend(answer: str, seen: str | None) -> SgeBackend:
        config = ClusterConfig(profile="t", backend="sge", transport="t", workdir="/w")
        sge = SgeBackend(config, RecordingTransport(config, answer))
        if seen:
            sge._submitted[number] = seen  # what a poll records from qstat -xml's pending line
        return sge

    assert backend(older + ours, submitted).qacct(number)[number]["exit_status"] == "0"
    assert backend(ours + older, submitted).qacct(number)[number]["exit_status"] == "0"
    assert backend(older, submitted).qacct(number) == {}, "ours is not written yet: wait, do not take the old one"
    # Never seen pending (it ended before the first poll): the newest record, last in the file.
    assert backend(older + ours, None).qacct(number)[number]["exit_status"] == "0"


def test_a_job_that_ends_between_qstat_and_qstat_j_is_allocated_from_qacct():
    # CI: qstat -xml listed the job running, then it ended and qstat -j said "Following jobs do
    # not exist" (exit 1), which the validator got as BackendUnavailableError.
    from clustrix.config import ClusterConfig
    from clustrix.transport import CommandResult
    from clustrix_sge.backend import SgeBackend
    from tests.golden import RecordingTransport

    answers = {
        ("qstat", "-xml"): (0, sample("qstat-xml-running-pending-array.xml"), ""),
        ("qstat", "-j", RUNNING): (1, "", sample("qstat-j-finished.txt.stderr").replace("34", RUNNING)),
        ("qacct", "-j", RUNNING): (0, sample("qacct-j-qdel-running.txt"), ""),
    }

    class Answering(RecordingTransport):
        def run(self, argv, *, input=None, env=None, timeout=0.0) -> CommandResult:
            return CommandResult(tuple(argv), *answers[tuple(argv)])

    config = ClusterConfig(profile="t", backend="sge", transport="t", workdir="/w")
    allocation = SgeBackend(config, Answering(config, "")).job_allocation(RUNNING, None)
    assert allocation is not None
    assert allocation.cores == 1 and allocation.time_limit == 600 and allocation.nodes
