"""The ``pbs`` backend against two real PBS servers: what ran, with what allocation, and what came back.

Every test runs on both profiles the test clusters write (``tests/clusters/up slurm pbs pbspro``):

- ``pbs``: the Torque dialect, SchedMD's qsub/qstat/qdel over the real Slurm cluster ``main``
  (PBS_* variables in jobs from its SPANK plugin; started array tasks are Slurm jobs of their own);
- ``pbs-pro``: a real OpenPBS server (server, scheduler, comm and mom in a network namespace of
  their own), the PBS Pro dialect: ``select=``, ``-J`` arrays, subjobs ``123[4].host``,
  ``qstat -x -f -F json``.

Every check reads what actually happened: the job's own environment and files, ``qstat -f`` run
through the backend's transport, or the job's final state. After every test nothing of it may be
left queued, held or running in either scheduler.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest

import clustrix
from clustrix import JobFailedError, JobState, cluster
from clustrix.api import ClusterFunction
from clustrix.errors import (
    BackendUnavailableError,
    JobCancelledError,
    SubmissionError,
)
from tests import batch_cases, worker_cases
from tests.batch_cases import add, sleep_for, timed_pid, touch
from tests.conftest import kill_workers_mid_map, on_each_cluster, profile_table, use_variant, wait_for
from tests.real_world.test_faults_real import client

pytestmark = [pytest.mark.real_world]

# Job functions travel by value: the ssh test runs them as another user with another interpreter.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TORQUE, PRO = "pbs", "pbs-pro"
# Where the Torque wrapper's jobs run (Slurm main's configuration), and where ssh tests stage.
SLURM_MAIN = "/var/lib/clustrix-test/slurm/main/slurm.conf"
SSH_WORKDIR = "/home/cxuser/pbs-jobs"


# The Torque wrapper runs on Slurm main: its tests are the Slurm group's (tests/conftest.py).
@pytest.fixture(params=on_each_cluster(TORQUE, PRO))
def pbs(request: pytest.FixtureRequest, cluster_profile, tmp_path: Path) -> Iterator[str]:
    name = cluster_profile(request.param)
    workdir = Path(profile_table(name)["workdir"])
    before = set(os.listdir(workdir)) if workdir.is_dir() else set()
    yield name
    # Nothing the test submitted is left queued, held or running: an assertion, not a hope.
    left = wait_for_empty_queue(name, [str(workdir), str(tmp_path), SSH_WORKDIR])
    # Jobs that failed keep their directories (cleanup = "on_success") for their logs; this test
    # has read them, so the run leaves nothing behind on disk.
    for entry in (set(os.listdir(workdir)) - before) if workdir.is_dir() else ():
        shutil.rmtree(workdir / entry, ignore_errors=True)
    assert not left, f"jobs left in {name}'s queue after the test: {left}"


# -- helpers --------------------------------------------------------------------------------------


def pbs_command(fn: ClusterFunction, *argv: str):
    """A PBS command (qstat, qdel, ...) run as the profile runs them: through the backend's transport."""
    backend = fn.session().backend
    return backend.transport.run([backend.command(argv[0]), *argv[1:]], env=backend.command_env())


def is_pro(fn: ClusterFunction) -> bool:
    return fn.session().backend.dialect == "pro"


def qstat_f(fn: ClusterFunction, job_id: str) -> dict[str, str]:
    """``qstat -f JOB`` as PBS prints it (PBS Pro: ``-x``, finished jobs too), read with a regex of its own."""
    result = pbs_command(fn, "qstat", *(["-x"] if is_pro(fn) else []), "-f", job_id)
    assert result.ok, result.stdout + result.stderr
    assert re.search(rf"^Job Id:\s*{re.escape(job_id)}$", result.stdout, re.MULTILINE), result.stdout
    # PBS Pro indents attributes with spaces and wraps long values onto tab-indented lines
    # (Torque indents attributes with a tab).
    text = re.sub(r"\n\t", "", result.stdout) if is_pro(fn) else result.stdout
    return dict(re.findall(r"^\s+([\w.]+) = (.*)$", text, re.MULTILINE))


def finished_record(fn: ClusterFunction, job_id: str) -> dict[str, str]:
    """``qstat_f`` once PBS recorded the job finished: PBS Pro does a second or two after the call
    returned (the backend collects a single job as soon as its runner returned)."""
    letter = ended_letter(fn)
    return wait_for(lambda: (r := qstat_f(fn, job_id))["job_state"] == letter and r, 60, f"{job_id} to read {letter}")


def ended_letter(fn: ClusterFunction) -> str:
    """The state letter of a finished job: Torque's C, PBS Pro's F (a subjob's X)."""
    return "F" if is_pro(fn) else "C"


def unfinished(profile: str, roots: list[str]) -> list[str]:
    """This PBS's jobs that are queued, held or running: every one on the OpenPBS server (its own),
    and under Slurm's wrapper the Slurm jobs that run in a directory under ``roots`` (Slurm main
    runs the Slurm tests' jobs too)."""
    fn = cluster(profile=profile)(add)
    if is_pro(fn):
        result = pbs_command(fn, "qstat", "-t")
        assert result.ok or not result.stdout, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        start = next((i + 1 for i, line in enumerate(lines) if line.startswith("---")), len(lines))
        return [line.split()[0] for line in lines[start:] if line.strip()]
    argv = ["squeue", "-h", "-r", "-o", "%i %T %Z"]
    result = fn.session().transport.run(argv, env={"SLURM_CONF": SLURM_MAIN}).check(BackendUnavailableError, "squeue")
    return [
        f"{job} {state}"
        for job, state, where in (line.split(" ", 2) for line in result.stdout.splitlines() if line.strip())
        if any(where == root or where.startswith(root + "/") for root in roots)
    ]


def wait_for_empty_queue(profile: str, roots: list[str]) -> list[str]:
    """Wait (cancels and drains take a moment) until none of ``unfinished`` is left; what is left after a minute."""
    deadline = time.monotonic() + 60
    while (left := unfinished(profile, roots)) and time.monotonic() < deadline:
        time.sleep(1)
    return left


def pbs_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(("PBS_", "CLUSTRIX_"))} | {"cwd": os.getcwd()}


def job_dirs(fn: ClusterFunction) -> set[str]:
    backend = fn.session().backend
    out = backend.transport.run(["sh", "-c", 'ls -A "$1" 2>/dev/null || true', "sh", backend.workdir])
    return set(out.stdout.split())


def task_of(array: str, index: int | str) -> str:
    """An array task's id as PBS names it: ``123[4].host`` from ``123[].host`` (PBS Pro), ``123[4]`` from ``123``."""
    return array.replace("[]", f"[{index}]") if "[]" in array else f"{array}[{index}]"


def number(job_id: str) -> str:
    """The job's (or its array's) number: ``123`` of ``123[4].host``, ``123[]``, ``123.host`` or ``123#5``."""
    return re.match(r"\d+", job_id)[0]


# -- the basics and the job's PBS environment ---------------------------------------------------


def test_add_returns_42_and_the_dialect_was_asked_of_the_server(pbs):
    fn = cluster(profile=pbs)(add)
    assert fn(10, 32) == 42
    backend = fn.session().backend
    assert backend.config.option("pbs_dialect") is None, "the test cluster's profile leaves the dialect to qstat"
    assert backend.dialect == {TORQUE: "torque", PRO: "pro"}[pbs]


def test_pbs_environment_variables_inside_the_job(pbs):
    fn = cluster(profile=pbs, cores=2, name="env-check")(pbs_env)
    future = fn.submit()
    env = future.result(timeout=120)
    assert env["PBS_JOBID"] == future.job_id == env["CLUSTRIX_JOB_ID"]
    assert env["PBS_JOBNAME"] == "env-check"
    # qsub ran in the job's own directory: that is the job's PBS_O_WORKDIR.
    assert env["PBS_O_WORKDIR"] == future.job.directory
    assert env["CLUSTRIX_CORES"] == "2"
    record = finished_record(fn, future.job_id)
    assert (record["Job_Name"], record["job_state"], record["Resource_List.ncpus"]) == (
        "env-check",
        ended_letter(fn),
        "2",
    )
    if is_pro(fn):
        # The select statement PBS Pro was asked (its NCPUS gave CLUSTRIX_CORES).
        assert record["Resource_List.select"] == "1:ncpus=2"


def read_node_file() -> tuple[str, list[str]]:
    path = os.environ["PBS_NODEFILE"]
    return os.uname().nodename, Path(path).read_text().split()


def test_node_file_lists_the_node_the_job_ran_on(pbs):
    # Torque writes PBS_NODEFILE itself; SchedMD's wrapper ships generate_pbs_nodefile for jobs to
    # make one, as a site's setup line would.
    pbs_path = profile_table(pbs).get("pbs_path", "")
    setup = [
        f"export PATH={pbs_path}:$PATH" if pbs_path else ":",
        'export PBS_NODEFILE="${PBS_NODEFILE:-$(generate_pbs_nodefile)}"',
    ]
    fn = cluster(profile=pbs, cores=2, setup=setup)(read_node_file)
    future = fn.submit()
    host, entries = future.result(timeout=120)
    assert entries, "the node file is empty"
    exec_host = qstat_f(fn, future.job_id)["exec_host"].split("/")[0]
    assert set(entries) == {exec_host}, (entries, exec_host)
    assert host.split(".")[0] == exec_host


# -- queues -----------------------------------------------------------------------------------------


def test_queue_is_honoured(pbs):
    fn = cluster(profile=pbs, queue="long")(pbs_env)
    future = fn.submit()
    future.result(timeout=120)
    assert qstat_f(fn, future.job_id)["queue"] == "long"


def test_unknown_queue_is_refused_in_qsubs_own_words(pbs, tmp_path):
    fn = cluster(profile=pbs, queue="no-such-queue", workdir=str(tmp_path / "jobs"))(add)
    with pytest.raises(SubmissionError, match="qsub refused the job") as info:
        fn(1, 2)
    said = {TORQUE: "Invalid partition name specified", PRO: "Unknown queue"}[pbs]
    assert said in info.value.scheduler_output
    assert list((tmp_path / "jobs").iterdir()) == [], "nothing is left staged"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("queue", "debug\ntouch {marker}"),
        ("queue", "debug; touch {marker}"),
        ("account", "x\n#PBS -l walltime=99:00:00"),
        ("extra", ["-l walltime=00:01:00\ntouch {marker}"]),
        ("env", {"X; touch {marker}": "1"}),
    ],
)
def test_hostile_directive_values_are_refused_before_anything_reaches_pbs(pbs, tmp_path, key, value):
    batch_cases.a_hostile_value_is_refused_before_anything_reaches_the_scheduler(pbs, tmp_path, key, value)


def report_env():
    return os.environ["X"], sys.argv[1:], os.environ["PBS_JOBNAME"]


def test_hostile_names_env_values_and_paths_reach_pbs_jobs_byte_exact(pbs, tmp_path, monkeypatch):
    # Slurm's qsub wrapper builds a shell command line from -o, -e and the script's path: the
    # backend never hands it a path. Names reach only #PBS lines, reduced to safe characters.
    with batch_cases.a_hostile_job(
        pbs,
        tmp_path,
        monkeypatch,
        report_env,
        value_tail=" %j %A ${PATH}",
        workdir_tail=":",
        name="a;b$(touch {marker})\n#PBS -l walltime=99:00:00 `touch {second}`",
    ) as (fn, future, (job_name,), _):
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,14}", job_name), job_name
        # The queue's default, on both clusters.
        assert qstat_f(fn, future.job_id)["Resource_List.walltime"] == "01:00:00", "the name added no directive"


# -- arrays -----------------------------------------------------------------------------------------


def task_identity(x: int) -> tuple[int, str, str, str, str]:
    env = os.environ
    return x * x, env["PBS_ARRAY_ID"], env["PBS_ARRAY_INDEX"], env["PBS_JOBID"], env["CLUSTRIX_JOB_ID"]


def batch_dirs(fn: ClusterFunction) -> set[str]:
    return {d for d in job_dirs(fn) if d.startswith("batch-")}


def test_a_worker_runs_its_calls_in_one_warm_process_until_one_crashes(pbs):
    worker_cases.a_worker_runs_its_calls_in_one_warm_process_until_one_crashes(pbs)


def test_map_of_20_is_one_array_of_workers(pbs):
    fn = cluster(profile=pbs)(task_identity)
    session = fn.session()
    submits: list[list[str]] = []
    real_run = session.transport.run

    def counting_run(argv, **kwargs):
        if "qsub" in argv[:4]:
            submits.append(list(argv))
        return real_run(argv, **kwargs)

    before = batch_dirs(fn)
    session.transport.run = counting_run
    try:
        futures = fn.map(range(20))
    finally:
        del session.transport.run
    # One qsub; it ran in the batch directory, with the workers' script named relative to it.
    assert len(submits) == 1, submits
    array_option = "-J 0-19" if is_pro(fn) else "-t 0-19"
    assert f"#PBS {array_option}\n" in Path(submits[0][4], submits[0][-1]).read_text()
    results = [f.result(timeout=300) for f in futures]
    assert [r[0] for r in results] == [x * x for x in range(20)]
    (array,) = {r[1] for r in results}
    assert [f.job_id for f in futures] == [f"{array}#{i}" for i in range(20)]
    # Each call knows the worker task it ran in (123[4] or 123[4].host: what CLUSTRIX_JOB_ID says inside).
    backend = fn.session().backend
    assert [backend.scheduler_job(f.job_id) for f in futures] == [task_of(r[1], r[2]) for r in results]
    assert [r[4] for r in results] == [task_of(r[1], r[2]) for r in results]
    own = results[5][3]
    if is_pro(fn):
        # A subjob is named by its array's id and its index, and qstat knows it by that name.
        assert own == task_of(array, results[5][2])
        wait_for(lambda: qstat_f(fn, own)["job_state"] in ("X", "F"), 60, f"subjob {own} to end")
    else:
        # Under Slurm's wrapper a started task has a job number of its own, which qstat knows.
        assert own != array
        assert qstat_f(fn, own)["Job_Name"] == "task_identity"
    assert batch_dirs(fn) == before, "the batch directory is cleaned once all its calls succeeded"


def subjobs(fn: ClusterFunction, array: str) -> dict[str, dict[str, str]]:
    """PBS Pro's records of every subjob of ``array``, finished ones too (``qstat -x -t -f -F json``)."""
    result = pbs_command(fn, "qstat", "-x", "-t", "-f", "-F", "json", array)
    assert result.ok, result.stdout + result.stderr
    jobs = json.loads(result.stdout)["Jobs"]
    return {job_id: record for job_id, record in jobs.items() if "[]" not in job_id}


def test_two_workers_on_two_cpus_drain_a_map_of_12_and_the_idle_ones_are_cancelled(pbs, cluster_profile):
    fn = cluster(profile=pbs, cores=1)(sleep_then)
    futures = fn.map([0.5] * 12)
    results = [f.result(timeout=300) for f in futures]
    assert [r[0] for r in results] == [0.5] * 12
    workers = {r[1] for r in results}
    assert len(workers) < 12, f"{len(workers)} workers ran 12 calls on 2 CPUs"
    array = futures[0].job_id.split("#")[0]
    if is_pro(fn):
        # Idle subjobs are deleted by their own ids at the drain, queued ones before they ever
        # start (no exec_host: a subjob's stime is its array's), although CPUs were free for them
        # once the workers ended. A worker deleted while it waits for more calls keeps no
        # exec_host in its history either, so the workers are among the subjobs, not exactly those
        # with a host.
        ended = wait_for(
            lambda: (t := subjobs(fn, array)) and all(r["job_state"] in ("X", "F") for r in t.values()) and t,
            60,
            "every subjob to end",
        )
        assert len(ended) == 12 and workers <= set(ended), (ended, workers)
        ran = {job_id for job_id, record in ended.items() if "exec_host" in record}
        assert len(ran | workers) < 12, f"all 12 subjobs started: {sorted(ran | workers)}"
        return
    # Slurm's qdel ends an array only as a whole: once every call ended, the array goes, with
    # every worker that never started. Slurm's accounting (under the wrapper) says which ran.
    env = {"SLURM_CONF": profile_table(cluster_profile("slurm"))["slurm_conf"]}

    def tasks() -> dict[str, str]:
        argv = ["sacct", "-n", "-P", "-X", "-j", array, "-o", "JobID,State"]
        out = fn.session().transport.run(argv, env=env).stdout
        return dict(line.split("|")[:2] for line in out.splitlines() if line)

    ended = wait_for(
        lambda: (t := tasks()) and all(s not in ("PENDING", "RUNNING") for s in t.values()) and t,
        60,
        "accounting to show the array ended",
    )
    never_started = [task for task, state in ended.items() if "[" in task or task == array]
    assert len(never_started) == 1 and ended[never_started[0]].startswith("CANCELLED"), ended


def test_chunksize_runs_several_calls_per_task(pbs, cluster_validator):
    futures = cluster(profile=pbs, time="00:10:00")(task_identity).map(range(10), chunksize=4)
    # The validator finds each task in qstat by the number PBS gave it, with its allocation.
    checked = [cluster_validator.validate(f, value_check=lambda r, x=x: r[0] == x * x) for x, f in enumerate(futures)]
    assert all(c.passed for c in checked), "\n".join(c.summary() for c in checked if not c.passed)
    assert {next(k.actual for k in c.checks if k.name == "allocated time limit") for c in checked} == {600}
    results = [f.result(timeout=300) for f in futures]
    assert [r[0] for r in results] == [x * x for x in range(10)]
    tasks = [r[4] for r in results]
    assert tasks == [f.job_id for f in futures]
    assert [tasks.count(t) for t in dict.fromkeys(tasks)] == [4, 4, 2]


def test_failed_array_task_keeps_its_batch_directory_and_the_others_return(pbs):
    fn = cluster(profile=pbs)(int)
    before = batch_dirs(fn)
    futures = fn.map(["1", "x", "3"])
    assert futures[0].result(timeout=120) == 1
    with pytest.raises(ValueError):
        futures[1].result(timeout=120)
    assert futures[2].result(timeout=120) == 3
    assert futures[1].state is JobState.FAILED and futures[1].job.status.exit_code == 1
    kept = batch_dirs(fn) - before
    assert len(kept) == 1
    fn.session().transport.remove_trees([f"{fn.session().backend.workdir}/{kept.pop()}"])


# -- limits: walltime and memory --------------------------------------------------------------------


def test_memory_limit_kill_is_out_of_memory(pbs):
    fn, future, error = batch_cases.a_call_over_its_memory_is_out_of_memory(pbs, "100MB", 600)
    if is_pro(fn):
        record = qstat_f(fn, future.job_id)
        assert record["job_state"] == ended_letter(fn)
        # OpenPBS's mom enforces mem with its cgroup hook, which says so on the job's stderr; PBS
        # accounts the whole limit used.
        assert "Cgroup mem limit exceeded" in error.stderr_tail
        assert (record["Resource_List.mem"], record["resources_used.mem"]) == ("100mb", "102400kb")
        return
    # Under the wrapper, Slurm main's cgroup kills the runner (the largest process) and the script
    # lives on: its EXIT trap records 137 and the cgroup's oom_kill count (the wrapper has no letter
    # for Slurm's OUT_OF_MEMORY, U, and keeps no exit status).
    assert error.exit_code == 137 and "its cgroup's oom_kill count" in str(error)
    assert "oom-kill" in error.stderr_tail
    assert qstat_f(fn, future.job_id)["job_state"] == "U"


def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_job_killing_itself_under_a_memory_limit_is_not_called_out_of_memory(pbs):
    fn = cluster(profile=pbs, memory="500MB")(kill_self)
    with pytest.raises(JobFailedError) as info:
        fn()
    assert info.value.state is JobState.FAILED and info.value.exit_code == 128 + signal.SIGKILL


@pytest.mark.expensive
def test_walltime_kill_is_job_timeout_error(pbs):
    # The wrapper's Slurm has a one-minute minimum; the kill comes at about 61 s (OpenPBS's mom
    # checks walltime on its polls: about as late).
    fn, future, error = batch_cases.a_call_over_its_time_limit_is_a_timeout(pbs, "00:01:00", 240)
    record = qstat_f(fn, future.job_id)
    assert (record["job_state"], record["Resource_List.walltime"]) == (ended_letter(fn), "00:01:00")
    if is_pro(fn):
        # PBS Pro's own exit status for it (JOB_EXEC_KILL_WALLTIME) and its mom's words.
        assert record["Exit_status"] == "-29"
        assert "walltime" in error.stderr_tail and "exceeded limit" in error.stderr_tail
    else:
        assert "DUE TO TIME LIMIT" in error.stderr_tail


@pytest.mark.expensive
def test_long_running_job_is_seen_running_then_completes(pbs):
    fn = cluster(profile=pbs, time="00:05:00")(sleep_for)
    future = fn.submit(90)
    wait_for(lambda: future.state is JobState.RUNNING, 60, "the job to run")
    assert qstat_f(fn, future.job_id)["job_state"] == "R"
    assert future.result(timeout=240) == "woke"
    states = [state for state, _ in future.job.history]
    assert states[-2:] == [JobState.RUNNING, JobState.COMPLETED]


# -- files --------------------------------------------------------------------------------------------


def transform_files(sources: list[str], target: str) -> dict:
    text = "".join(Path(source).read_text() for source in sources)
    Path(target).write_text(text.upper())
    return {"bytes": len(text), "cwd": os.getcwd()}


def test_file_staging_and_processing_on_the_node(pbs, tmp_path, cluster_validator):
    sources = [tmp_path / f"in-{i}.txt" for i in range(3)]
    for i, source in enumerate(sources):
        source.write_text(f"part {i}, written here, read there\n")
    target = tmp_path / "out.txt"
    fn = cluster(profile=pbs)(transform_files)
    result = cluster_validator.validate(
        fn.submit([str(s) for s in sources], str(target)),
        value_check=lambda v: v["bytes"] == sum(len(s.read_text()) for s in sources),
        expected_files=[str(target)],
    )
    assert result.passed, result.summary()
    assert target.read_text() == "".join(s.read_text() for s in sources).upper()


# -- how jobs end: errors and recovery ---------------------------------------------------------------


def test_errors_come_back_typed_and_the_cluster_recovers(pbs):
    batch_cases.an_exception_comes_back_with_its_type_and_remote_traceback(pbs)
    fn, future = batch_cases.an_exit_code_reaches_job_failed_error(pbs)
    if is_pro(fn):
        assert qstat_f(fn, future.job_id)["Exit_status"] == "3"
    else:
        # Torque-over-Slurm keeps no exit status: the job script's own record gave it.
        assert "exit_status" not in qstat_f(fn, future.job_id)
    assert cluster(profile=pbs)(add)(20, 22) == 42


def test_cancel_ends_the_job_in_pbs(pbs):
    fn = cluster(profile=pbs)(sleep_for)
    future = fn.submit(300)
    wait_for(lambda: future.state is JobState.RUNNING, 60, "the job to run")
    assert future.cancel()
    letter = ended_letter(fn)
    wait_for(lambda: qstat_f(fn, future.job_id)["job_state"] == letter, 60, f"qstat to say {letter}")
    wait_for(lambda: future.job.state is JobState.CANCELLED, 60, "the monitor to see CANCELLED")
    # PBS Pro records a deleted job's exit status as its script left it (0 here), and says
    # "terminated" (substate 91) only if the qdel did not race the job's start: CANCELLED comes
    # from the substate or from this client's own cancel (tests/pbs/test_parse.py).


def test_cancel_of_a_whole_map_with_pending_tasks(pbs):
    fn = cluster(profile=pbs, cores=2)(sleep_for)
    futures = fn.map([300] * 4)
    wait_for(lambda: futures[0].state is JobState.RUNNING, 60, "the first task to run")
    clustrix.cancel(futures)
    assert all(f.cancelled() for f in futures)
    for future in futures:
        wait_for(lambda f=future: f.job.state is JobState.CANCELLED, 90, f"{future.job_id} to be CANCELLED")
    # The fixture then checks that nothing of the array is left queued or running.


def sleep_then(seconds: float) -> tuple[float, str]:
    time.sleep(seconds)
    return seconds, os.environ["CLUSTRIX_JOB_ID"]


def test_workers_killed_mid_map_lose_no_result_and_new_ones_run_the_calls_left(pbs):
    fn = cluster(profile=pbs, cores=1, poll_interval=0.5, poll_interval_max=1.0)(sleep_then)
    futures = fn.map([1.0] * 12)
    array = futures[0].job_id.split("#")[0]

    def kill() -> None:
        # The whole array, running workers and those not started: the calls left need new workers.
        assert pbs_command(fn, "qdel", array).returncode == 0

    outcomes = kill_workers_mid_map(futures, kill)
    relaunched = {number(v[1]) for v in outcomes.values() if v != "cancelled"} - {number(array)}
    assert relaunched, f"the calls left ran in workers started after the kill: {outcomes}"


def test_a_single_worker_is_relaunched_for_the_one_call_left(pbs):
    # Each call takes both CPUs, so the second worker waits while the first runs; deleting the
    # array then leaves one call unclaimed, and ONE new worker is launched for it (on PBS Pro an
    # array of one, which -J 0-0 cannot say).
    fn = cluster(profile=pbs, cores=2, poll_interval=0.5, poll_interval_max=1.0)(sleep_then)
    futures = fn.map([60.0, 1.0])
    array = futures[0].job_id.split("#")[0]
    wait_for(lambda: futures[0].state is JobState.RUNNING, 60, "the first call to run")
    assert pbs_command(fn, "qdel", array).returncode == 0
    with pytest.raises(JobCancelledError):
        futures[0].result(timeout=120)
    seconds, worker = futures[1].result(timeout=120)
    assert seconds == 1.0 and number(worker) != number(array)
    # The only task of the new workers' array.
    assert re.fullmatch(r"\d+\[0\](\.clustrix-pbs)?", worker), worker


def sleep_then_touch(seconds: float, path: str) -> str:
    time.sleep(seconds)
    Path(path).write_text("ran")
    return "woke"


def test_cancelling_one_task_of_a_static_array_never_ends_its_siblings(pbs, tmp_path, caplog):
    fn = cluster(profile=pbs, cores=2)(sleep_then_touch)
    markers = [tmp_path / f"ran-{i}" for i in range(3)]
    futures = fn.map([5, 1, 1], [str(m) for m in markers], chunksize=1)
    wait_for(lambda: futures[0].state is JobState.RUNNING, 60, "the first task to run")
    with caplog.at_level("WARNING", logger="clustrix"):
        assert clustrix.cancel([futures[2]]) == 1
    assert [f.result(timeout=180) for f in futures[:2]] == ["woke", "woke"]
    wait_for(lambda: futures[2].job.state.finished, 120, "the third task to end")
    if is_pro(fn):
        # PBS Pro deletes the one subjob (it waited for a CPU: the first two hold both): it never runs.
        assert futures[2].cancelled() and futures[2].job.state is JobState.CANCELLED
        assert [m.exists() for m in markers] == [True, True, False]
        return
    # Slurm's qdel wrapper can end an array only as a whole (a task's own number is refused, and
    # 123_4 is read as 123). The backend says it cannot, and every task, that one included, runs
    # to its end; nothing is killed that was not asked for.
    assert "cannot cancel one task of an array alone" in caplog.text
    assert futures[2].job.state is JobState.COMPLETED
    assert all(m.exists() for m in markers)


def test_cancelling_one_call_of_a_map_of_workers_leaves_the_others(pbs, tmp_path):
    fn = cluster(profile=pbs, cores=2)(sleep_then_touch)
    markers = [tmp_path / f"ran-{i}" for i in range(3)]
    futures = fn.map([5, 60, 1], [str(m) for m in markers])
    wait_for(lambda: futures[0].state is JobState.RUNNING, 60, "the first call to run")
    assert clustrix.cancel([futures[1]]) == 1
    assert [futures[0].result(timeout=180), futures[2].result(timeout=180)] == ["woke", "woke"]
    wait_for(lambda: futures[1].job.state is JobState.CANCELLED, 120, "the cancelled call to end")
    assert [m.exists() for m in markers] == [True, False, True]


# -- cleanup and resource management ------------------------------------------------------------------


def test_nothing_is_left_in_the_queue_or_on_disk(pbs):
    fn = cluster(profile=pbs)(add)
    before = job_dirs(fn)
    singles = [fn.submit(i, i) for i in range(3)]
    batch = fn.map(range(6), range(6), chunksize=2)
    doomed = cluster(profile=pbs)(sleep_for).submit(300)
    wait_for(lambda: doomed.state is not JobState.PENDING, 60, "the long job to start")
    doomed.cancel()
    assert [f.result(timeout=180) for f in singles + batch] == [0, 2, 4, 0, 2, 4, 6, 8, 10]
    wait_for(lambda: doomed.job.state is JobState.CANCELLED, 60, "the cancelled job to end")
    if is_pro(fn):
        # Every job and subjob ends in PBS's own record (singles a moment after their results).
        for job_id in {f.job_id for f in [*singles, *batch, doomed]}:
            finished_record(fn, job_id)
    else:
        ids = sorted({f.job_id.split("[")[0] for f in [*singles, *batch, doomed]})
        listed = pbs_command(fn, "qstat", *ids).stdout
        states = re.findall(r"^\S+\s+\S+\s+\S+\s+\S+\s+(\w)\s", listed, re.MULTILINE)
        assert states and set(states) == {"C"}, f"qstat shows jobs still queued or running: {states}"
    # Successful jobs' directories and the batch's are cleaned; the cancelled job's is kept for its logs.
    left = job_dirs(fn) - before
    assert left == {Path(doomed.job.directory).name}, left
    fn.session().transport.remove_trees([doomed.job.directory])


# -- parallel processing -------------------------------------------------------------------------------


def test_parallel_pmap_uses_the_allocated_cores(pbs):
    batch_cases.pmap_runs_on_the_allocated_cores_at_once(pbs)


def test_independent_jobs_run_side_by_side(pbs):
    futures = [cluster(profile=pbs)(timed_pid).submit(4) for _ in range(2)]
    (_, start_a, end_a), (_, start_b, end_b) = [f.result(timeout=120) for f in futures]
    assert start_a < end_b and start_b < end_a, "the cluster's two cores ran the two jobs one after the other"


# -- the validator, with PBS's own view ------------------------------------------------------------------


def test_validator_sees_what_pbs_allocated(pbs, cluster_validator):
    result = batch_cases.the_validator_sees_what_was_allocated(cluster_validator, pbs, "debug")
    metrics = result.metrics
    if is_pro(fn := cluster(profile=pbs)(add)):
        # PBS Pro keeps the exit status and what the job used, once it recorded the job finished:
        # the metrics are qstat's then, and the runner's while PBS still ends the job (the call
        # was collected as soon as its runner returned).
        assert metrics.source in ("qstat", "runner") and metrics.exit_code == 0, metrics
        record = finished_record(fn, result.job_id)
        assert (record["Exit_status"], record["exec_host"].split("/")[0]) == ("0", metrics.nodes[0])
        return
    # qstat -f here keeps no exit status, so the metrics are the runner's record.
    assert metrics.source == "runner" and metrics.exit_code == 0
    assert metrics.peak_memory is not None and metrics.peak_memory >= 50 * 1024**2


# -- dependencies -----------------------------------------------------------------------------------------


def slow(x, seconds: float = 3.0):
    time.sleep(seconds)
    return x


def test_future_argument_becomes_depend_afterok_and_passes_its_value(pbs):
    upstream = cluster(profile=pbs)(slow).submit([1, 2, 3])
    downstream = cluster(profile=pbs)(touch).submit(upstream)
    assert downstream.result(timeout=300) == [1, 2, 3]
    # The two ends are collected in parallel: the upstream's files may be read after the downstream's.
    assert upstream.result(timeout=60) == [1, 2, 3]
    assert downstream.job.meta["start"] >= upstream.job.meta["end"]


def test_dependency_on_a_call_of_a_map_of_workers(pbs):
    # A call run by a worker has no PBS id to depend on: the dependant is held (qsub -h), then
    # released (qrls) once the call returned.
    tasks = cluster(profile=pbs)(slow).map([10, 20], [2, 2])
    downstream = cluster(profile=pbs)(touch).submit(tasks[1])
    assert downstream.result(timeout=300) == 20
    assert tasks[1].result(timeout=60) == 20
    assert downstream.job.meta["start"] >= tasks[1].job.meta["end"]


def test_failed_upstream_cancels_dependants(pbs, tmp_path):
    _, downstream = batch_cases.a_failed_upstream_cancels_its_dependant(pbs, tmp_path)
    assert "exec_host" not in qstat_f(cluster(profile=pbs)(add), downstream.job_id), "it never ran"


# -- polling ------------------------------------------------------------------------------------------------


def test_one_qstat_per_poll_for_many_jobs(pbs):
    def query(argv: list[str]) -> str | None:
        if argv[0].endswith("qstat"):
            return "qstat"
        return "other" if argv[0] == "sh" and "qsub" not in argv else None

    per_poll = batch_cases.scheduler_commands_per_poll(
        pbs, query, lambda fn: fn.map(range(12)) + [fn.submit(x) for x in range(3)]
    )
    # Every poll: one qstat for all 15 jobs, plus the listing of the workers' files and at most
    # two reads of the jobs' own records (ids of tasks that started, ends qstat keeps no exit status for).
    # On PBS Pro a poll within the wall-clock second of the last qstat reads the records alone.
    assert {counts.get("qstat", 0) for counts in per_poll} == ({0, 1} if pbs == PRO else {1}), per_poll
    assert max(counts.get("other", 0) for counts in per_poll) <= 3, per_poll


@pytest.mark.parametrize("pbs", on_each_cluster(PRO), indirect=True)
def test_no_qstat_is_slowed_by_openpbs_for_following_the_last_one_too_soon(pbs):
    # OpenPBS's qstat sleeps 0.2 s when the same user's last qstat ended in the same wall-clock
    # second; a client polling every 50 ms would pay that on every poll. Its polls in that second
    # read the jobs' end records instead, and a call still returns as soon as its runner did.
    fn = cluster(profile=pbs)(add)
    session = fn.session()
    qstats: list[tuple[float, float]] = []
    real_run = session.transport.run

    def timing_run(argv, **kwargs):
        started = time.time()
        result = real_run(argv, **kwargs)
        if argv[0].endswith("qstat"):
            qstats.append((started, time.time()))
        return result

    session.transport.run = timing_run
    try:
        assert [fn.submit(x, 1).result(timeout=120) for x in range(5)] == [1, 2, 3, 4, 5]
    finally:
        del session.transport.run
    assert qstats
    assert all(int(later[0]) > int(earlier[1]) for earlier, later in itertools.pairwise(qstats)), qstats


# -- profile keys: dialect override, environment --------------------------------------------------------------


def test_pbs_dialect_override_is_used_instead_of_asking(pbs, tmp_path, monkeypatch):
    # Told the other dialect than its server speaks, the backend submits with that dialect's words,
    # which the server refuses in its own words: Slurm's wrapper has no -k (PBS Pro's direct write),
    # OpenPBS's qsub no -t (Torque's arrays).
    wrong = {TORQUE: "pro", PRO: "torque"}[pbs]
    use_variant(tmp_path, monkeypatch, pbs, "wrong-dialect", pbs_dialect=wrong, workdir=str(tmp_path / "j"))
    fn = cluster(profile="wrong-dialect")(add)
    assert fn.session().backend.dialect == wrong
    refused = {TORQUE: "Unknown option: k", PRO: "invalid option -- 't'"}[pbs]
    with pytest.raises(SubmissionError, match=refused):
        fn.map([1, 2], [3, 4], chunksize=1)
    assert list((tmp_path / "j").iterdir()) == [], "nothing is left staged"


def test_pbs_env_reaches_every_pbs_command(pbs, tmp_path, monkeypatch):
    # Through pbs_env, the commands are pointed at a server that does not answer: Slurm's wrapper
    # finds its Slurm through SLURM_CONF (a copy whose controller port nobody listens on), OpenPBS's
    # commands their server through PBS_SERVER (a port on the server's host nobody listens on).
    if pbs == PRO:
        env = {"PBS_SERVER": "clustrix-pbs:1"}
        down = "Connection refused|cannot connect to server"
    else:
        conf = tmp_path / "slurm.conf"
        conf.write_text(re.sub(r"(?m)^SlurmctldPort=.*$", "SlurmctldPort=1", Path(SLURM_MAIN).read_text()))
        env = {"SLURM_CONF": str(conf)}
        down = "Unable to contact slurm controller"
    use_variant(tmp_path, monkeypatch, pbs, "pbs-down", workdir=str(tmp_path / "j"))
    config = Path(os.environ["CLUSTRIX_CONFIG"])
    # A TOML inline table, which use_variant does not write.
    table = ", ".join(f"{key} = {json.dumps(value)}" for key, value in env.items())
    config.write_text(config.read_text() + f"pbs_env = {{ {table} }}\n")
    with pytest.raises(BackendUnavailableError, match=down):
        cluster(profile="pbs-down")(add)(1, 2)
    assert list((tmp_path / "j").iterdir()) == [], "nothing is left staged"


# -- over SSH ----------------------------------------------------------------------------------------------


def test_pbs_over_ssh(pbs, cluster_profile, tmp_path, monkeypatch):
    cluster_profile("ssh-local")
    fn, future = batch_cases.runs_over_ssh_as_the_hosts_user(pbs, tmp_path, monkeypatch, SSH_WORKDIR, "PBS_JOBID")
    assert qstat_f(fn, future.job_id)["Job_Owner"].startswith("cxuser@")
    futures = cluster(profile=f"{pbs}-ssh")(add).map(range(4), range(4))
    assert [f.result(timeout=120) for f in futures] == [0, 2, 4, 6]
    array = re.escape(futures[0].job_id.split("#")[0])
    assert all(re.fullmatch(rf"{array}#\d", f.job_id) for f in futures)
    assert re.fullmatch(r"\d+\[\]\.clustrix-pbs" if is_pro(fn) else r"\d+", futures[0].job_id.split("#")[0])


# -- a client that dies -----------------------------------------------------------------------------------


def test_a_killed_client_s_map_is_collected_by_a_new_process(pbs, tmp_path, monkeypatch):
    # The client submits a map of workers and dies at once (os._exit): a new process attaches to
    # every call by id and collects it, following workers it never launched.
    name = use_variant(tmp_path, monkeypatch, pbs, "pbs-private", workdir=str(tmp_path / "jobs"))
    proc = client(name, 6, 3, "die")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    job_ids = out.split()
    assert len(job_ids) == 6 and all("#" in job_id for job_id in job_ids), job_ids
    futures = [clustrix.attach(job_id) for job_id in job_ids]
    assert [f.result(timeout=240) for f in futures] == [0, 2, 4, 6, 8, 10]
    # Every call's directory is cleaned, and the workers' batch directory with its record.
    wait_for(lambda: not os.listdir(tmp_path / "jobs"), 30, "the batch to be cleaned")
