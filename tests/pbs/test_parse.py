"""The PBS plugin's readers, on output captured from the real test cluster (Torque dialect, tests/pbs/samples)
and on PBS Pro / Torque samples from their documentation (tests/pbs/samples/pro, .../torque-docs).

The real-world tests run the same code against the live Torque-dialect cluster; these pin what
cannot be caused there at will (PBS Pro's JSON and exit codes, Torque's own exit_status) and
the exact records behind each way a job ends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clustrix import JobState
from clustrix.endrecord import EndRecord
from clustrix_pbs import parse

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> str:
    """A sample's text, without the comment lines that say where it came from."""
    return "".join(line for line in (SAMPLES / name).read_text().splitlines(True) if not line.startswith("#"))


def one(name: str) -> dict[str, str]:
    records = parse.parse_full(sample(name))
    assert len(records) == 1, records
    return next(iter(records.values()))


# -- dialects and ids --------------------------------------------------------------------------------------


def test_dialect_from_qstat_version():
    # Slurm's wrapper has no --version (usage on stderr, exit 2): its formats are Torque's.
    assert parse.detect_dialect(sample("qstat-version.txt") + sample("qstat-version.txt.stderr")) == "torque"
    assert parse.detect_dialect(sample("pro/qstat-version.txt")) == "pro"
    assert parse.detect_dialect("qstat: command not found") is None


def test_array_task_ids_in_both_forms():
    # PBS Pro's qsub -J prints 123[].server; the wrapper's qsub -t a bare number (qsub-array.txt).
    wrapper_array = sample("qsub-array.txt").strip()
    assert wrapper_array.isdigit()
    assert parse.task_id(wrapper_array, 4) == f"{wrapper_array}[4]"
    assert parse.base_id(f"{wrapper_array}[4]") == wrapper_array
    assert parse.bare_task(f"{wrapper_array}[4]") == (wrapper_array, 4)
    assert parse.task_id("12860480[].meta-pbs.metacentrum.cz", 1) == "12860480[1].meta-pbs.metacentrum.cz"
    assert parse.base_id("12860480[1].meta-pbs.metacentrum.cz") == "12860480[].meta-pbs.metacentrum.cz"
    assert parse.bare_task("12860480[1].meta-pbs.metacentrum.cz") is None
    assert parse.base_id("12860476.meta-pbs.metacentrum.cz") == "12860476.meta-pbs.metacentrum.cz"
    assert parse.base_id("97") == "97" and parse.bare_task("97") is None


def test_the_subjobs_of_an_array_asked_more_than_once_are_asked_by_their_array():
    ids = ["7[0].srv", "7[1].srv", "7[2].srv", "8[3].srv", "9.srv", "10[].srv"]
    assert parse.arrays_for_subjobs(ids) == ["10[].srv", "7[].srv", "8[3].srv", "9.srv"]


# -- Torque's text qstat -f ---------------------------------------------------------------------------------


def test_qstat_f_of_several_jobs_at_once():
    text = "".join(sample(f"qstat-f-{kind}.txt") for kind in ("running", "pending", "held", "array", "completed"))
    records = parse.parse_full(text)
    assert len(records) == 5
    running = one("qstat-f-running.txt")
    assert (running["job_state"], running["exec_host"], running["Resource_List.walltime"]) == ("R", "vm/1", "00:05:00")
    assert parse.status(running, "torque").state is JobState.RUNNING
    assert parse.status(running, "torque").nodes == "vm"
    for kind in ("pending", "held", "array"):
        assert parse.status(one(f"qstat-f-{kind}.txt"), "torque").state is JobState.PENDING, kind
    assert parse.status(one("qstat-f-completed.txt"), "torque") is None, "C: the job ended"


def test_unknown_ids_print_nothing():
    assert parse.parse_full(sample("qstat-f-unknown.txt")) == {}
    assert parse.parse_full(sample("qstat-f-array-task.txt")) == {}


def test_torque_documentation_sample_with_exit_status_and_wrapped_values():
    record = one("torque-docs/qstat-f-exit-status.txt")
    assert record["Variable_List"].endswith("PBS_O_WORKDIR=/opt/moab,PBS_O_QUEUE=batchq")
    assert "cannot find user 'user' in password file" in record["sched_hint"]
    assert parse.exit_status(record) == -1
    status = parse.final_status(record, "torque", EndRecord(), cancelled=False, memory_limited=False)
    assert status.state is JobState.FAILED and "JOB_EXEC code -1" in status.reason
    assert status.nodes == "node1"


# -- how a job ended, where qstat -f keeps no exit status (the real test cluster) ------------------------


def final(name: str, own: EndRecord = EndRecord(), cancelled: bool = False, memory_limited: bool = False):
    return parse.final_status(one(name), "torque", own, cancelled=cancelled, memory_limited=memory_limited)


def test_no_finished_record_here_has_an_exit_status():
    for kind in ("completed", "exit3", "cancelled", "walltime-exceeded", "array-cancelled"):
        assert parse.exit_status(one(f"qstat-f-{kind}.txt")) is None, kind


def test_the_runners_record_decides_completed_or_failed():
    done = final("qstat-f-completed.txt", EndRecord("112", 0, True))
    assert (done.state, done.exit_code, done.nodes) == (JobState.COMPLETED, 0, "vm")
    raised = final("qstat-f-completed.txt", EndRecord("112", 1, False))
    assert (raised.state, raised.exit_code) == (JobState.FAILED, 1)


def test_exit_status_from_the_job_script_when_the_runner_never_finished():
    exited = final("qstat-f-exit3.txt", EndRecord("113", 3, None))
    assert (exited.state, exited.exit_code) == (JobState.FAILED, 3)
    # A memory limit does not make a job that exited on its own an out-of-memory kill.
    assert final("qstat-f-exit3.txt", EndRecord("113", 137, None), memory_limited=True).state is JobState.FAILED


def test_walltime_kill_is_timeout_from_the_records_times():
    # mtime (start) to ctime (end) against Resource_List.walltime = 00:01:00: Slurm kills at 60-90 s.
    record = one("qstat-f-walltime-exceeded.txt")
    assert parse.duration(record["Resource_List.walltime"]) == 60
    assert 60 <= parse.elapsed(record) <= 120
    # SIGTERM ran the script's EXIT trap: it recorded 0, but the runner never finished.
    assert final("qstat-f-walltime-exceeded.txt", EndRecord("114", 0, None)).state is JobState.TIMEOUT
    # The same job still running: its ctime is the projected end, and it is RUNNING.
    assert parse.status(one("qstat-f-walltime-running.txt"), "torque").state is JobState.RUNNING


def test_cancelled_jobs():
    assert final("qstat-f-cancelled.txt", EndRecord("106", 0, None), cancelled=True).state is JobState.CANCELLED
    outside = final("qstat-f-cancelled.txt", EndRecord("106", 0, None))
    assert outside.state is JobState.CANCELLED and "outside clustrix" in outside.reason
    # Deleted while queued: an mtime, but no node ever (no exec_host): it never started.
    never = final("qstat-f-array-cancelled.txt")
    assert parse.started(one("qstat-f-array-cancelled.txt")) is None
    assert never.state is JobState.CANCELLED and "before it started" in never.reason
    assert parse.final_status(None, "torque", EndRecord(), cancelled=False, memory_limited=False).state is (
        JobState.CANCELLED
    )


def test_killed_outright_under_a_memory_limit_is_out_of_memory():
    # No runner record and no exit from the script: its shell was SIGKILLed with it.
    assert final("qstat-f-exit3.txt", memory_limited=True).state is JobState.OUT_OF_MEMORY
    lost = final("qstat-f-exit3.txt")
    assert lost.state is JobState.FAILED and lost.exit_code is None


def test_a_runner_killed_by_the_kernel_for_memory_is_out_of_memory():
    # A cgroup limit kills the runner, the largest process; the script lives on and its EXIT trap
    # records 137 with the cgroup's oom_kill count.
    killed = final("qstat-f-exit3.txt", EndRecord("113", 137, None, 1), memory_limited=True)
    assert (killed.state, killed.exit_code) == (JobState.OUT_OF_MEMORY, 137)
    assert "killed 1 process of the job for memory" in killed.reason
    # A call that returned keeps its value, whatever else the kernel killed in the job.
    assert final("qstat-f-completed.txt", EndRecord("112", 0, True, 2)).state is JobState.COMPLETED
    # A worker whose call the kernel killed ends 0 (the call's own record says why it failed).
    assert final("qstat-f-exit3.txt", EndRecord("113", 0, None, 1)).state is not JobState.OUT_OF_MEMORY
    # No kill counted: a SIGKILL from elsewhere stays a failure.
    assert final("qstat-f-exit3.txt", EndRecord("113", 137, None, 0), memory_limited=True).state is JobState.FAILED


# -- PBS Pro's JSON ------------------------------------------------------------------------------------------


def test_pro_running_job_from_json():
    records = parse.parse_json(sample("pro/qstat-xf-json-running.txt"))
    record = records["12860476.meta-pbs.metacentrum.cz"]
    status = parse.status(record, "pro")
    assert (status.state, status.nodes) == (JobState.RUNNING, "charon24,charon21")
    assert status.reason.startswith("Job run at")
    assert parse.memory(record["Resource_List.mem"]) == 8 * 1024**3
    assert parse.duration(record["Resource_List.walltime"]) == 60
    assert record["Resource_List.ncpus"] == "4"
    assert parse.started(record).minute == 23 and parse.exit_status(record) is None


@pytest.mark.parametrize(
    ("job", "state", "code"),
    [
        ("12860477", JobState.COMPLETED, 0),
        ("12860478", JobState.TIMEOUT, -29),
        ("12860479", JobState.OUT_OF_MEMORY, -27),
    ],
)
def test_pro_finished_jobs_end_by_their_exit_status(job, state, code):
    record = parse.parse_json(sample("pro/qstat-xf-json-finished.txt"))[f"{job}.meta-pbs.metacentrum.cz"]
    assert parse.status(record, "pro") is None, "F: the job ended"
    # The scheduler's exit status decides, whatever the job's own record would say.
    status = parse.final_status(record, "pro", EndRecord(), cancelled=False, memory_limited=False)
    assert (status.state, status.exit_code) == (state, code)


def test_pro_times_and_usage():
    record = parse.parse_json(sample("pro/qstat-xf-json-finished.txt"))["12860477.meta-pbs.metacentrum.cz"]
    assert parse.elapsed(record) == 42, "resources_used.walltime"
    assert (parse.ended(record) - parse.started(record)).total_seconds() == 42
    assert parse.memory(record["resources_used.mem"]) == 51200 * 1024


def test_pro_array_and_subjobs():
    records = parse.parse_json(sample("pro/qstat-xf-json-array.txt"))
    base = "12860480[].meta-pbs.metacentrum.cz"
    tasks = [parse.task_id(base, i) for i in range(3)]
    assert set(records) == {base, *tasks}
    assert parse.status(records[base], "pro").state is JobState.RUNNING, "B: a subjob runs"
    assert parse.status(records[tasks[0]], "pro") is None, "X: the subjob ended"
    done = parse.final_status(records[tasks[0]], "pro", EndRecord(), cancelled=False, memory_limited=False)
    assert done.state is JobState.COMPLETED
    assert parse.status(records[tasks[1]], "pro").state is JobState.RUNNING
    assert parse.status(records[tasks[2]], "pro").state is JobState.PENDING


def test_pro_signal_kill_is_cancel_or_timeout_by_context():
    record = {"job_state": "F", "Exit_status": "271", "Resource_List.walltime": "00:01:00", "exec_host": "n1/0"}
    assert parse.final_status(record, "pro", EndRecord(), cancelled=True, memory_limited=False).state is (
        JobState.CANCELLED
    )
    killed = parse.final_status(record, "pro", EndRecord(), cancelled=False, memory_limited=False)
    assert killed.state is JobState.FAILED and killed.reason == "killed by signal 15"
    late = {**record, "resources_used.walltime": "00:01:02"}
    assert parse.final_status(late, "pro", EndRecord(), cancelled=False, memory_limited=False).state is (
        JobState.TIMEOUT
    )


def test_sizes_and_durations():
    assert parse.memory("4194304kb") == 4 * 1024**3
    assert parse.memory("150mb") == 150 * 1024**2
    assert parse.memory("--") is None and parse.memory(None) is None
    assert parse.duration("01:30:00") == 5400 and parse.duration("100:00:00") == 360000
    assert parse.duration("1:00:00:00") == 86400 and parse.duration("Infinite") is None
    assert parse.timestamp("Tue Oct  4 21:23:20 2022").day == 4
    assert parse.timestamp("not a time") is None


# -- a real OpenPBS server (tests/clusters/pbspro.sh; samples in tests/pbs/samples/openpbs) ---------------


def openpbs(name: str) -> dict[str, str]:
    records = parse.parse_json(sample(f"openpbs/{name}"))
    assert len(records) == 1, records
    return next(iter(records.values()))


def test_openpbs_deleted_running_job_is_cancelled_whatever_its_exit_status():
    # qdel of a running job: Exit_status 0 (the job script's TERM trap exited cleanly), substate 91.
    record = openpbs("qstat-xf-json-terminated.txt")
    assert (record["Exit_status"], record["substate"]) == ("0", "91")
    for cancelled in (True, False):  # by this client, or by anyone else
        status = parse.final_status(record, "pro", EndRecord(), cancelled=cancelled, memory_limited=False)
        assert status.state is JobState.CANCELLED
        assert status.reason.endswith("and terminated by root@vm")


def test_openpbs_cgroup_memory_kill_is_out_of_memory():
    # The mom's cgroup hook kills inside the limit: Exit_status 137 (SIGKILL), all of mem used.
    record = openpbs("qstat-xf-json-memory-killed.txt")
    status = parse.final_status(record, "pro", EndRecord(), cancelled=False, memory_limited=True)
    assert (status.state, status.exit_code) == (JobState.OUT_OF_MEMORY, 137)
    assert status.reason == "killed at its memory limit: PBS counted 65536kb used of the 64mb asked"
    # A SIGKILL that did not use the memory it asked is not a memory kill.
    light = {**record, "resources_used.mem": "11124kb"}
    assert parse.final_status(light, "pro", EndRecord(), cancelled=False, memory_limited=True).state is (
        JobState.FAILED
    )


def test_openpbs_subjobs_are_their_own_records():
    records = parse.parse_json(sample("openpbs/qstat-xtf-json-array.txt"))
    array = next(job_id for job_id in records if "[]" in job_id)
    assert set(records) == {array, parse.task_id(array, 0), parse.task_id(array, 1)}
    assert [parse.task_index(job_id) for job_id in sorted(records)] == [0, 1, None]
    assert parse.task_index("97[3]") == 3


def test_openpbs_subjob_deleted_while_queued_is_cancelled_not_completed():
    # An idle worker deleted at the drain: "finished", Exit_status 0, never given a node.
    record = openpbs("qstat-xf-json-subjob-deleted-queued.txt")
    assert (record["Exit_status"], record["substate"], "exec_host" in record) == ("0", "92", False)
    status = parse.final_status(record, "pro", EndRecord(), cancelled=False, memory_limited=False)
    assert (status.state, status.reason) == (JobState.CANCELLED, "ended before it ran: Subjob finished")


def test_openpbs_job_deleted_as_it_started_reads_finished_so_only_the_cancel_tells():
    # A qdel racing the job's start: the run's acknowledgement resets PBS's "terminated" flag.
    record = openpbs("qstat-xf-json-deleted-at-start.txt")
    assert (record["Exit_status"], record["substate"]) == ("0", "92")
    cancelled = parse.final_status(record, "pro", EndRecord(), cancelled=True, memory_limited=False)
    assert (cancelled.state, cancelled.reason) == (JobState.CANCELLED, "cancelled (qdel)")
    # Unless its call had returned before the cancel reached it.
    returned = parse.final_status(record, "pro", EndRecord(runner_returned=True), cancelled=True, memory_limited=False)
    assert returned.state is JobState.COMPLETED
