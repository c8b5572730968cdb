"""The ``sge`` backend against a real (Son of) Grid Engine: what ran, where, with what, and how it ended.

The cluster comes from the profiles file (``tests/clusters/up sge`` writes ``sge``: queues
``all.q`` and ``short.q``, PE ``smp``, 2 slots). Every check reads what actually happened:
the job's own environment and limits, files it wrote, and SGE's own records (``qstat -j``
while it is queued or running, ``qacct -j`` after it ended) through the backend's transport.
"""

from __future__ import annotations

import itertools
import os
import re
import resource
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

import clustrix
from clustrix import JobFailedError, JobState, cluster
from clustrix.api import ClusterFunction
from clustrix.errors import (
    BackendUnavailableError,
    ConfigError,
    DependencyFailedError,
    JobTimeoutError,
    SubmissionError,
)
from clustrix.session import ClusterSession
from clustrix_sge import parse
from tests import batch_cases, checkpoint_cases, worker_cases
from tests.batch_cases import add, broken, sleep_for, touch
from tests.conftest import use_variant, wait_for

pytestmark = [pytest.mark.real_world, pytest.mark.cluster_group("sge")]

# Job functions travel by value: the ssh test runs them as another user with another interpreter.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def sge(cluster_profile) -> str:
    return cluster_profile("sge")


@pytest.fixture(autouse=True)
def _validate_every_job(monkeypatch: pytest.MonkeyPatch, cluster_validator):
    """After each test, the validator checks every SGE job it submitted against SGE's own records:
    listed by the scheduler, states moving forward to the end it had, what was allocated covering
    what was asked (jobs that returned), and qacct's metrics; each lands in the run's report."""
    futures = []
    submit = ClusterSession.submit

    def recording(self, specs, chunksize=1):
        submitted = submit(self, specs, chunksize)
        futures.extend(submitted)
        return submitted

    monkeypatch.setattr(ClusterSession, "submit", recording)
    yield
    monkeypatch.undo()
    for future in futures:
        # Skipped: jobs of other backends, and futures cancelled with future.cancel(), which
        # concurrent.futures.wait (and so the validator) never counts as done; their tests check qacct.
        if future.job.session.config.backend != "sge" or future.cancelled():
            continue
        error = future.exception(timeout=120)
        expected = {"expected_value": future.result()} if error is None else {"expected_error": type(error)}
        result = cluster_validator.validate(future, expected_state=future.job.state, **expected)
        assert result.passed, result.summary()


# -- SGE's own view, through the backend's transport ---------------------------------------------


def sge_command(fn: ClusterFunction, *argv: str):
    backend = fn.session().backend
    return backend.transport.run(list(argv), env=backend.command_env())


def qstat_j(fn: ClusterFunction, job_id: str) -> dict[str, str]:
    """``qstat -j``: the job as qmaster holds it, while it is queued or running."""
    result = sge_command(fn, "qstat", "-j", parse.job_number(job_id))
    assert result.ok, result.stderr
    return parse.qstat_j(result.stdout)


def qacct(fn: ClusterFunction, job_id: str) -> dict[str, str]:
    """``qacct -j``: SGE's accounting record of the job (or array task) once it ended."""
    record = fn.session().backend.accounting_record(job_id, wait=20)
    assert record is not None, f"qacct has no record of job {job_id}"
    return record


def qstat_lists(fn: ClusterFunction, job_id: str) -> bool:
    listed = parse.qstat_xml(sge_command(fn, "qstat", "-xml").stdout)
    return parse.find(listed, job_id) is not None


# -- job functions ------------------------------------------------------------------------------


def sge_env() -> dict[str, str]:
    names = ("JOB_ID", "JOB_NAME", "QUEUE", "SGE_TASK_ID", "NSLOTS", "NHOSTS", "PE", "PE_HOSTFILE", "SGE_O_WORKDIR")
    env = {k: v for k, v in os.environ.items() if k in names or k.startswith("CLUSTRIX")}
    hostfile = os.environ.get("PE_HOSTFILE")
    env["hostfile"] = Path(hostfile).read_text() if hostfile and os.path.exists(hostfile) else ""
    env["cwd"] = os.getcwd()
    env["address_space"] = resource.getrlimit(resource.RLIMIT_AS)[0]
    return env


# -- the basics and the job's environment ------------------------------------------------------------


def test_add_returns_42(sge):
    assert cluster(profile=sge)(add)(10, 32) == 42


def test_sge_environment_inside_the_job(sge):
    fn = cluster(profile=sge)(sge_env)
    future = fn.submit()
    env = future.result(timeout=120)
    assert env["JOB_ID"] == env["CLUSTRIX_JOB_ID"] == future.job_id
    assert env["JOB_NAME"] == "sge_env"
    assert env["QUEUE"] == "all.q", "the profile's queue"
    assert env["SGE_TASK_ID"] == "undefined", "a single call is no array"
    assert env["NSLOTS"] == env["CLUSTRIX_CORES"] == "1"
    # -cwd: the job starts where qsub ran (this process's directory, on this machine).
    assert env["cwd"] == env["SGE_O_WORKDIR"] == os.getcwd()
    record = qacct(fn, future.job_id)
    assert (record["qname"], record["failed"], record["exit_status"]) == ("all.q", "0", "0")
    assert future.job.status.state is JobState.COMPLETED


def timed_pid(seconds: float) -> tuple[int, float, float]:
    start = time.time()
    time.sleep(seconds)
    return os.getpid(), start, time.time()


def fan_out() -> tuple[dict, list]:
    return sge_env(), clustrix.pmap(timed_pid, [1.5, 1.5])


def test_parallel_environment_gives_two_slots_and_the_job_uses_them(sge):
    fn = cluster(profile=sge, cores=2, parallel=True)(fan_out)
    future = fn.submit()
    env, [(pid_a, start_a, end_a), (pid_b, start_b, end_b)] = future.result(timeout=120)
    assert env["NSLOTS"] == env["CLUSTRIX_CORES"] == "2"
    assert env["PE"] == "smp" and env["NHOSTS"] == "1"
    host, slots, queue = env["hostfile"].split()[:3]
    assert (slots, queue.split("@")[0]) == ("2", "all.q"), env["hostfile"]
    assert pid_a != pid_b and start_a < end_b and start_b < end_a, "the two iterations did not overlap"
    record = qacct(fn, future.job_id)
    assert (record["granted_pe"], record["slots"], record["hostname"]) == ("smp", "2", host)


def test_queue_specification(sge):
    fn = cluster(profile=sge, queue="short.q")(sge_env)
    future = fn.submit()
    assert future.result(timeout=120)["QUEUE"] == "short.q"
    record = qacct(fn, future.job_id)
    assert record["qname"] == "short.q"
    assert "-q short.q" in record["category"]


def test_qsub_refusal_is_submission_error_in_sges_words(sge):
    with pytest.raises(SubmissionError, match=re.escape('unknown queue "no-such.q"')):
        cluster(profile=sge, queue="no-such.q")(add)(1, 2)


# -- arrays -------------------------------------------------------------------------------------------


def task_identity(x: int) -> tuple[int, str, str]:
    return x * x, os.environ["JOB_ID"], os.environ["SGE_TASK_ID"]


def test_a_worker_runs_its_calls_in_one_warm_process_until_one_crashes(sge):
    worker_cases.a_worker_runs_its_calls_in_one_warm_process_until_one_crashes(sge)


def test_map_of_12_is_one_array_of_workers(sge):
    fn, futures, results = batch_cases.a_map_is_one_array_of_workers(sge, 12, ("JOB_ID", "SGE_TASK_ID"))
    assert {r[1] for r in results} == {futures[0].job_id.split("#")[0]}, "one job number: one array"
    # Each call knows its worker task, as SGE names it; SGE arrays start at task 1.
    backend = fn.session().backend
    assert [backend.scheduler_job(f.job_id) for f in futures] == [f"{r[1]}.{r[2]}" for r in results]
    assert all(1 <= int(r[2]) <= 12 for r in results)
    record = backend.accounting_record(backend.scheduler_job(futures[0].job_id), wait=60)
    assert record is not None and record["failed"] == "0" and record["exit_status"] == "0", record


def test_chunksize_runs_several_calls_per_task(sge):
    futures = cluster(profile=sge)(task_identity).map(range(5), chunksize=2)
    results = [f.result(timeout=300) for f in futures]
    assert [r[0] for r in results] == [x * x for x in range(5)]
    assert [r[2] for r in results] == ["1", "1", "2", "2", "3"]


def span(x):
    start = time.time()
    time.sleep(1)
    return start, time.time()


def test_array_throttle_runs_one_task_at_a_time(sge):
    fn = cluster(profile=sge, array_throttle=1)(span)
    futures = fn.map(range(3))
    assert qstat_j(fn, futures[0].job_id)["maximum concurrency"] == "1"
    spans = sorted(f.result(timeout=300) for f in futures)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans


# -- resource limits and monitoring ----------------------------------------------------------------


def wait_for_file(path: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    return sge_env()


def test_memory_is_the_jobs_total_over_its_slots(sge, tmp_path):
    # h_vmem is per slot: 400 MB over 2 slots is h_vmem=200M, and SGE makes it the job's 400 MB rlimit.
    fn = cluster(profile=sge, cores=2, memory="400MB", time="00:05:00")(wait_for_file)
    release = tmp_path / "release"
    future = fn.submit(str(release), 60)
    wait_for(lambda: future.state is JobState.RUNNING, 60, "the job to run")
    running = qstat_j(fn, future.job_id)
    release.touch()
    env = future.result(timeout=60)
    assert parse.requests(running["hard resource_list"]) == {"h_rt": "300", "h_vmem": "200M"}
    assert env["address_space"] == 400 * 1024**2
    assert env["NSLOTS"] == "2"


def test_memory_resource_mem_free_is_a_request_for_the_whole_job(sge):
    # mem_free here is SGE's default: requestable, no consumable, so no per-slot division and no rlimit.
    fn = cluster(profile=sge, memory_resource="mem_free", cores=2, memory="400MB")(sge_env)
    future = fn.submit()
    env = future.result(timeout=120)
    assert env["address_space"] == resource.RLIM_INFINITY
    record = qacct(fn, future.job_id)
    assert parse.requests(parse.category(record["category"])["-l"]) == {"mem_free": "400M"}
    assert record["slots"] == "2"


def test_h_vmem_limit_is_out_of_memory(sge):
    fn, future, error = batch_cases.a_call_over_its_memory_is_out_of_memory(sge, "200MB", 600, seconds=0)
    assert isinstance(error.__cause__, MemoryError), "the job's own MemoryError, under the h_vmem rlimit"
    assert "h_vmem" in error.reason
    record = qacct(fn, future.job_id)
    assert (record["failed"], record["exit_status"]) == ("0", "1")
    assert "h_vmem=200M" in record["category"]
    # Under the limit, the same job succeeds.
    assert fn(50, 0) == 50 * 1024**2


def test_h_rt_kill_is_job_timeout_error(sge):
    fn, future, _ = batch_cases.a_call_over_its_time_limit_is_a_timeout(sge, "00:00:10", 180)
    record = qacct(fn, future.job_id)
    assert record["failed"].startswith("37") and record["exit_status"].startswith("137")
    assert 10 <= parse.seconds(record["ru_wallclock"]) <= 30


def test_validator_sees_what_sge_allocated_and_accounted(sge, cluster_validator):
    # SGE samples usage every second or so: the job holds its block 3 s, for SGE to see it.
    result = batch_cases.the_validator_sees_what_was_allocated(
        cluster_validator, sge, "all.q", megabytes=100, memory="400MB"
    )
    assert {c.name: c for c in result.checks}["allocated memory"].actual == 400 * 1024**2
    metrics = result.metrics
    assert metrics.source == "qacct" and metrics.exit_code == 0 and metrics.state == "COMPLETED"
    assert metrics.allocated_cores == 2 and metrics.allocated_memory == 400 * 1024**2
    assert metrics.submitted_at <= metrics.started_at <= metrics.ended_at and metrics.run_time >= 3
    assert metrics.peak_memory >= 100 * 1024**2, "qacct's maxvmem saw the block"
    assert [state for state, _ in result.history] == ["PENDING", "RUNNING", "COMPLETED"]


def test_allocation_while_running_from_qstat(sge, tmp_path):
    fn = cluster(profile=sge, cores=2, memory="300MB", time="00:05:00", queue="short.q")(wait_for_file)
    release = tmp_path / "release"
    future = fn.submit(str(release), 60)
    wait_for(lambda: future.state is JobState.RUNNING, 60, "the job to run")
    allocation = fn.session().backend.job_allocation(future.job_id, future.job.meta)
    release.touch()
    future.result(timeout=60)
    assert (allocation.cores, allocation.memory, allocation.time_limit, allocation.queue) == (
        2,
        300 * 1024**2,
        300,
        "short.q",
    )
    assert allocation.nodes == (qacct(fn, future.job_id)["hostname"],)


# -- files and data ----------------------------------------------------------------------------------


def column_sums(source: str, target: str) -> dict[str, float]:
    import csv

    with open(source, newline="") as f:
        rows = list(csv.DictReader(f))
    sums = {name: sum(float(row[name]) for row in rows) for name in rows[0]}
    Path(target).write_text("".join(f"{name},{total}\n" for name, total in sums.items()))
    return sums


def test_file_operations_and_data_processing_on_the_node(sge, tmp_path):
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text("a,b\n" + "".join(f"{i},{i * 0.5}\n" for i in range(100)))
    sums = cluster(profile=sge)(column_sums)(str(source), str(target))
    assert sums == {"a": 4950.0, "b": 2475.0}
    assert target.read_text() == "a,4950.0\nb,2475.0\n"


# -- how jobs end -------------------------------------------------------------------------------------


def test_exception_type_round_trips_with_remote_traceback(sge):
    fn, future = batch_cases.an_exception_comes_back_with_its_type_and_remote_traceback(sge)
    assert qacct(fn, future.job_id)["exit_status"] == "1", "the runner exits 1 when the call raised"


def test_error_state_ends_the_job_with_sges_reason_instead_of_waiting(sge, tmp_path):
    # A working directory that does not exist: SGE puts the job in Eqw, where it would stay for ever.
    missing = tmp_path / "no-such-dir"
    fn = cluster(profile=sge, extra=[f"-wd {missing}"])(add)
    future = fn.submit(1, 2)
    with pytest.raises(JobFailedError, match="error state") as info:
        future.result(timeout=120)
    assert info.value.state is JobState.FAILED
    assert f"can't chdir to {missing}" in info.value.reason
    assert not qstat_lists(fn, future.job_id), "the job in error state was deleted"


def test_exit_code_reaches_job_failed_error(sge):
    fn, future = batch_cases.an_exit_code_reaches_job_failed_error(sge)
    assert qacct(fn, future.job_id)["exit_status"] == "3"


def test_cancel_of_a_running_job(sge):
    fn = cluster(profile=sge)(sleep_for)
    future = fn.submit(300)
    wait_for(lambda: future.state is JobState.RUNNING, 60, "the job to run")
    assert future.cancel()
    wait_for(lambda: future.job.state is JobState.CANCELLED, 60, "the monitor to see CANCELLED")
    record = qacct(fn, future.job_id)
    assert record["failed"].startswith("100") and record["exit_status"].startswith("137")


def test_cancel_of_a_pending_job_that_sge_keeps_no_record_of(sge):
    fn = cluster(profile=sge, extra=["-h"])(add)  # a user hold: it stays queued
    future = fn.submit(1, 2)
    wait_for(lambda: qstat_lists(fn, future.job_id), 30, "qstat to list the job")
    assert future.cancel() and future.cancelled()
    wait_for(lambda: future.job.state is JobState.CANCELLED, 60, "the monitor to see CANCELLED")
    assert "deleted before it started" in future.job.status.reason
    assert not qstat_lists(fn, future.job_id)
    assert fn.session().backend.accounting_record(future.job_id, wait=3) is None, "it never ran"


def test_an_unreachable_qmaster_is_backend_unavailable(cluster_profile, tmp_path, monkeypatch):
    base = cluster_profile("sge")
    use_variant(tmp_path, monkeypatch, base, "sge-down", sge_qmaster_port=1, workdir=str(tmp_path / "jobs"))
    with pytest.raises(BackendUnavailableError, match="qmaster"):
        cluster(profile="sge-down")(add)(1, 2)
    assert list((tmp_path / "jobs").iterdir()) == [], "nothing is left staged"
    # The same key with the cluster's real port reaches it: the key is what SGE's commands used.
    use_variant(tmp_path, monkeypatch, base, "sge-port", sge_qmaster_port=16850)
    assert cluster(profile="sge-port")(add)(20, 22) == 42


# -- a package in the job's Python -----------------------------------------------------------------


def use_packages() -> tuple[str, object, str, int]:
    import attrs
    import sge_only_here

    @attrs.frozen
    class Point:
        x: int
        y: int

    return attrs.__file__, attrs.asdict(Point(1, 2)), sge_only_here.__file__, sge_only_here.answer()


def test_external_dependencies_import_in_the_jobs_python(sge, tmp_path):
    package = tmp_path / "site" / "sge_only_here"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("def answer():\n    return 42\n")
    with pytest.raises(ImportError):
        import sge_only_here  # noqa: F401 - not importable here: only the job's path has it
    fn = cluster(profile=sge, setup=[f"export PYTHONPATH={tmp_path / 'site'}:$PYTHONPATH"])(use_packages)
    attrs_file, as_dict, local_file, answer = fn()
    assert attrs_file.startswith(sys.prefix), "attrs from the job's interpreter's site-packages"
    assert as_dict == {"x": 1, "y": 2}
    assert (local_file, answer) == (str(package / "__init__.py"), 42)


# -- dependencies ---------------------------------------------------------------------------------------


def slow(x, seconds: float = 3.0):
    time.sleep(seconds)
    return x


def test_future_argument_waits_held_and_passes_its_value(sge):
    upstream = cluster(profile=sge)(slow).submit([1, 2, 3])
    fn = cluster(profile=sge)(touch)
    downstream = fn.submit(upstream)
    record = qstat_j(fn, downstream.job_id)
    assert record["jid_predecessor_list (req)"] == upstream.job_id
    held = parse.find(parse.qstat_xml(sge_command(fn, "qstat", "-xml").stdout), downstream.job_id)
    assert held is not None and held.state == "hqw", "held until the client sees the upstream COMPLETED"
    assert downstream.result(timeout=300) == [1, 2, 3]
    started = qacct(fn, downstream.job_id)["start_time"]
    assert parse.local_time(started) >= parse.local_time(qacct(fn, upstream.job_id)["end_time"])


def test_array_waits_for_an_array_task(sge):
    upstream = cluster(profile=sge)(slow).map([10, 20], [3, 3])
    futures = cluster(profile=sge)(add).after(upstream[1]).map(range(3), range(3))
    assert [f.result(timeout=300) for f in futures] == [0, 2, 4]
    assert all(f.job.meta["start"] >= upstream[1].job.meta["end"] for f in futures)


def test_failed_upstream_cancels_dependants_which_never_run(sge, tmp_path):
    upstream = cluster(profile=sge)(broken).submit()
    marker = tmp_path / "ran"
    fn = cluster(profile=sge)(touch)
    downstream = fn.submit(upstream, str(marker))
    after = cluster(profile=sge)(touch).after(upstream).map([1, 2], [str(marker), str(marker)])
    with pytest.raises(DependencyFailedError, match=f"job {upstream.job_id} it depends on ended FAILED"):
        downstream.result(timeout=300)
    for future in after:
        with pytest.raises(DependencyFailedError):
            future.result(timeout=120)
    assert downstream.state is JobState.CANCELLED
    assert not marker.exists()
    backend = fn.session().backend
    assert backend.accounting_record(downstream.job_id, wait=0) is None, "SGE never started it"
    assert not qstat_lists(fn, downstream.job_id) and not qstat_lists(fn, after[0].job_id)


# -- monitoring: one qstat per poll ---------------------------------------------------------------------


def test_one_qstat_per_poll_and_qacct_once_per_array_end(sge):
    def query(argv: list[str]) -> str | None:
        return argv[0] if argv[0] in ("qstat", "qacct") else None

    per_poll = batch_cases.scheduler_commands_per_poll(sge, query, lambda fn: fn.map(range(8)))
    # At most one of each (none once every worker of the map is known to have ended).
    assert max(counts.get("qstat", 0) for counts in per_poll) == 1, per_poll
    assert max(counts.get("qacct", 0) for counts in per_poll) <= 1, per_poll


def test_states_seen_by_the_monitor_match_qstat(sge, tmp_path):
    fn = cluster(profile=sge)(wait_for_file)
    release = tmp_path / "release"
    future = fn.submit(str(release), 60)
    wait_for(lambda: future.state is JobState.RUNNING, 60, "the job to run")
    line = parse.find(parse.qstat_xml(sge_command(fn, "qstat", "-xml").stdout), future.job_id)
    # "t" (being transferred to its host) is running already for clustrix, and SGE moves on to "r".
    assert line is not None and line.state in ("t", "r"), line
    assert future.job.status.nodes == line.host
    release.touch()
    future.result(timeout=60)
    # The result is collected once the runner returned, SGE lists the job a moment longer.
    wait_for(lambda: not qstat_lists(fn, future.job_id), 30, "qstat to drop the ended job")
    assert [state for state, _ in future.job.history] == [JobState.PENDING, JobState.RUNNING, JobState.COMPLETED]


# -- hostile values ------------------------------------------------------------------------------------


def report_env():
    time.sleep(3)  # longer than the h_rt=1 a hostile value tries to set
    return os.environ["X"], sys.argv[1:], os.environ["JOB_NAME"], os.environ["QUEUE"]


def test_hostile_names_env_values_and_paths_reach_sge_jobs_byte_exact(sge, tmp_path, monkeypatch):
    # A "#$" at the start of any script line is a directive to qsub, even inside a quoted value.
    with batch_cases.a_hostile_job(
        sge,
        tmp_path,
        monkeypatch,
        report_env,
        value_tail="#$ -l h_rt=1\n#$ -q short.q\n %j ${PATH}",
        workdir_tail=" #h ",
        name="9a;b$(touch {marker})\n#$ -q short.q",
    ) as (fn, future, (job_name, queue), name):
        assert job_name == "_" + re.sub(r"[^A-Za-z0-9_.-]", "_", name), "sanitised, and no leading digit"
        assert queue == "all.q", "no directive of a hostile value reached qsub"
        assert "h_rt" not in qacct(fn, future.job_id)["category"]


@pytest.mark.parametrize("bad", ["$HOME/x", "a:b", "a,b", "$JOB_ID", "line\nbreak"])
def test_workdirs_sge_would_rewrite_are_refused_before_anything_is_written(sge, tmp_path, monkeypatch, bad):
    workdir = f"{tmp_path}/jobs-{bad}"
    use_variant(tmp_path, monkeypatch, sge, "bad-workdir", workdir=workdir)
    with pytest.raises(ConfigError, match="workdir"):
        cluster(profile="bad-workdir")(add)(1, 2)
    assert not Path(workdir).exists() and not (tmp_path / "jobs-$HOME").exists()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("queue", "all.q\ntouch {marker}"),
        ("account", "x\n#$ -q short.q"),
        ("extra", ["-m n", "-m n\ntouch {marker}"]),
        ("setup", ["true\n#$ -q short.q"]),
        ("python", "/usr/bin/python3\n#$ -q short.q"),
        ("parallel_environment", "smp\n#$ -q short.q"),
        ("env", {"X; touch {marker}": "1"}),
    ],
)
def test_hostile_directive_values_are_refused_before_anything_reaches_sge(sge, tmp_path, key, value):
    batch_cases.a_hostile_value_is_refused_before_anything_reaches_the_scheduler(sge, tmp_path, key, value)


# -- over SSH, from a login node -------------------------------------------------------------------------


def test_sge_over_ssh(cluster_profile, tmp_path, monkeypatch):
    cluster_profile("ssh-local")
    cluster_profile("sge")
    fn, future = batch_cases.runs_over_ssh_as_the_hosts_user(
        "sge", tmp_path, monkeypatch, "/home/cxuser/sge-jobs", "JOB_ID"
    )
    assert qacct(fn, future.job_id)["owner"] == "cxuser"
    futures = cluster(profile="sge-ssh")(add).map(range(3), range(3))
    assert [f.result(timeout=120) for f in futures] == [0, 2, 4]
    with pytest.raises(JobTimeoutError):
        cluster(profile="sge-ssh", time="00:00:05")(sleep_for)(60)


# -- a compute-heavy job ------------------------------------------------------------------------------


def count_primes(bounds: tuple[int, int]) -> tuple[int, float]:
    low, high = bounds
    start = time.process_time()
    count = sum(1 for n in range(max(low, 2), high) if all(n % d for d in range(2, int(n**0.5) + 1)))
    return count, time.process_time() - start


def primes_below(limit: int) -> list[tuple[int, float]]:
    half = limit // 2
    return clustrix.pmap(count_primes, [(0, half), (half, limit)])


@pytest.mark.expensive
def test_compute_intensive_workload_uses_both_slots(sge):
    fn = cluster(profile=sge, cores=2, parallel=True, time="00:10:00")(primes_below)
    future = fn.submit(4_000_000)
    parts = future.result(timeout=900)
    assert sum(count for count, _ in parts) == 283146  # pi(4e6), from a sieve
    record = qacct(fn, future.job_id)
    worker_cpu = sum(cpu for _, cpu in parts)
    assert worker_cpu > 10, "a workload worth measuring"
    # SGE accounts the CPU of every process of the job: both workers' time is in its record.
    assert parse.seconds(record["cpu"]) >= 0.9 * worker_cpu, (record["cpu"], worker_cpu)
    assert record["slots"] == "2"


def test_a_counter_past_h_rt_finishes_after_requeues(sge):
    # 24 one-second steps in jobs of 10 s, each checkpointed 2 s before SGE's h_rt kill (a
    # SIGKILL: SGE gives no warning signal without -notify, the runner's own timer does).
    checkpoint_cases.a_counter_past_its_time_limit_finishes_after_requeues(
        sge, "00:00:10", steps=24, step=1.0, requeues=2, timeout=300
    )
