"""The Slurm plugin's readers on output captured from the real test clusters (Slurm 22.05).

The real-world tests exercise the same code against live clusters; these pin the cases
that are hard to catch live at will: pending array ranges, throttles, memory kills.
"""

from __future__ import annotations

from clustrix import JobState
from clustrix_slurm import parse

# sacct -n -P -X -j 54,55 -o JobID,State,ExitCode,Reason,NodeList: a throttled array mid-way
# and a job killed over --mem=50M (OverMemoryKill without cgroups).
SACCT = """\
55|FAILED|0:9|None|vm
54_0|COMPLETED|0:0|None|vm
54_[1-5%1]|PENDING|0:0|JobArrayTaskLimit|None assigned
"""

# scontrol -o show job 54, cut to the fields read (the real lines hold ~50 fields).
SCONTROL = """\
JobId=54 ArrayJobId=54 ArrayTaskId=2-5%1 ArrayTaskThrottle=1 JobName=wrap JobState=PENDING Reason=JobArrayTaskLimit Dependency=(null) ExitCode=0:0 ReqNodeList=(null) ExcNodeList=(null) NodeList=(null) BatchHost=vm
JobId=57 ArrayJobId=54 ArrayTaskId=1 JobName=wrap JobState=COMPLETED Reason=None ExitCode=0:0 ReqNodeList=(null) ExcNodeList=(null) NodeList=vm BatchHost=vm
JobId=6 JobName=wrap JobState=FAILED Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0 ReqNodeList=(null) ExcNodeList=(null) NodeList=vm BatchHost=vm
"""  # noqa: E501


def test_sacct_lines_expand_pending_array_ranges():
    found = {}
    for line in SACCT.splitlines():
        job_id, state, code, reason, nodes = line.split("|")
        for one in parse.expand_job_id(job_id):
            found[one] = parse.status(state, reason, code, nodes, memory_limited=one == "55")
    assert sorted(found) == ["54_0", "54_1", "54_2", "54_3", "54_4", "54_5", "55"]
    assert found["54_3"].state is JobState.PENDING
    assert found["54_3"].reason == "JobArrayTaskLimit"
    assert found["54_3"].nodes == ""
    assert found["54_0"].state is JobState.COMPLETED
    assert found["54_0"].exit_code == 0


def test_memory_kill_is_out_of_memory_only_with_a_memory_limit():
    assert parse.status("FAILED", "JobLaunchFailure", "0:9", "vm", memory_limited=True).state is JobState.OUT_OF_MEMORY
    killed = parse.status("FAILED", "JobLaunchFailure", "0:9", "vm", memory_limited=False)
    assert killed.state is JobState.FAILED
    assert "signal 9" in killed.reason


def test_sacct_cancelled_by_uid_and_exit_codes():
    cancelled = parse.status("CANCELLED by 0", "None", "0:0", "vm", memory_limited=False)
    assert cancelled.state is JobState.CANCELLED
    failed = parse.status("FAILED", "NonZeroExitCode", "3:0", "vm", memory_limited=False)
    assert (failed.state, failed.exit_code, failed.reason) == (JobState.FAILED, 3, "NonZeroExitCode")
    assert parse.status("TIMEOUT", "TimeLimit", "0:15", "vm", memory_limited=False).state is JobState.TIMEOUT


def test_scontrol_records_by_task_id():
    records = parse.parse_scontrol(SCONTROL)
    assert sorted(records) == ["54_1", "54_2", "54_3", "54_4", "54_5", "6"]
    assert records["54_4"]["JobState"] == "PENDING"
    assert records["54_1"]["NodeList"] == "vm"
    assert records["6"]["ExitCode"] == "3:0"


def test_states_that_cannot_be_caused_at_will_here():
    # Words as Slurm documents them for sacct/squeue; a node failure or a preemption cannot be
    # provoked on the test clusters, so their mapping is pinned here.
    assert parse.status("NODE_FAIL", "NodeDown", "0:0", "n2", memory_limited=False).state is JobState.NODE_FAIL
    preempted = parse.status("PREEMPTED", "None", "0:0", "n1", memory_limited=False)
    # Slurm says PREEMPTED only when the job was not requeued (a requeued one is REQUEUED/PENDING): an end.
    assert preempted.state is JobState.PREEMPTED and preempted.state.finished
    assert parse.status("OUT_OF_MEMORY", "OutOfMemory", "0:125", "vm", memory_limited=True).state is (
        JobState.OUT_OF_MEMORY
    )
    assert parse.status("REQUEUED", "None", "0:0", "", memory_limited=False).state is JobState.PENDING
    # squeue marks states with more to come with a "+"; an unknown word keeps the job waiting.
    assert parse.status("CANCELLED+", "None", "0:15", "vm", memory_limited=False).state is JobState.CANCELLED
    unknown = parse.status("SOMETHING_NEW", "None", "0:0", "vm", memory_limited=False)
    assert unknown.state is JobState.RUNNING and "SOMETHING_NEW" in unknown.reason


def test_allocation_fields():
    # From `scontrol -o show job` on the main cluster: TRES=cpu=2,mem=400M,node=1,billing=2 TimeLimit=00:05:00
    assert parse.tres("cpu=2,mem=400M,node=1,billing=2") == {"cpu": "2", "mem": "400M", "node": "1", "billing": "2"}
    assert parse.slurm_memory("400M") == 400 * 1024**2
    assert parse.slurm_memory("1234K") == 1234 * 1024
    assert parse.slurm_memory("300Mn") == 300 * 1024**2
    assert parse.slurm_memory("16?") is None and parse.slurm_memory("") is None
    assert parse.slurm_time("00:05:00") == 300
    assert parse.slurm_time("1-00:00:00") == 86400
    assert parse.slurm_time("05:00") == 300
    assert parse.slurm_time("UNLIMITED") is None
