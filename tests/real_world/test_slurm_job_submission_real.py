"""The ``slurm`` backend against real Slurm clusters: what ran, with what allocation, and what came back.

The clusters come from the profiles file (``tests/clusters/up slurm`` writes ``slurm`` with
slurmdbd accounting, ``slurm-noacct`` without it, and ``slurm-multi`` with three nodes).
Every check reads what actually happened: the job's own environment, ``scontrol`` through
the backend's transport, files on the node, or the scheduler's final state.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cloudpickle
import pytest

import clustrix
from clustrix import JobFailedError, JobState, cluster
from clustrix.api import ClusterFunction
from clustrix.environment import main_port
from clustrix.errors import ConfigError, JobOutOfMemoryError, JobTimeoutError, SubmissionError
from tests import batch_cases, checkpoint_cases, worker_cases
from tests.batch_cases import add, batch_dirs, exit_hard, sleep_for, touch
from tests.conftest import kill_workers_mid_map, profile_table, use_variant, wait_for

pytestmark = [pytest.mark.real_world, pytest.mark.cluster_group("slurm")]

# Job functions travel by value: the ssh test runs them as another user with another interpreter.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def slurm(cluster_profile) -> str:
    return cluster_profile("slurm")


# -- helpers --------------------------------------------------------------------------------------


def scontrol_job(fn: ClusterFunction, job_id: str) -> dict[str, str]:
    """``scontrol show job`` as the scheduler sees it, run through the function's backend transport."""
    backend = fn.session().backend
    result = backend.transport.run(
        ["scontrol", "-o", "show", "job", job_id], env={"SLURM_CONF": backend.config.option("slurm_conf")}
    )
    assert result.ok, result.stderr
    return dict(re.findall(r"(?:^|\s)([\w/:]+)=(\S*)", result.stdout.splitlines()[0]))


def settled_job(fn: ClusterFunction, job_id: str) -> dict[str, str]:
    """``scontrol_job`` once Slurm has ended the job: past RUNNING (the client collects a call as
    soon as its runner returned, before slurmd reports the end) and past COMPLETING (its processes
    reaped and its cgroup removed: seconds on a busy node)."""
    return wait_for(
        lambda: (record := scontrol_job(fn, job_id))["JobState"] not in ("RUNNING", "COMPLETING") and record,
        60,
        f"Slurm to finish completing job {job_id}",
    )


def slurm_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(("SLURM", "CLUSTRIX"))}


# -- the basics -----------------------------------------------------------------------------------


def test_add_returns_42(slurm):
    assert cluster(profile=slurm)(add)(10, 32) == 42


class Payload:
    """An argument the test can tell is still referenced (a weakref)."""

    def __init__(self, size: int) -> None:
        self.data = bytes(size)


def payload_size(payload: Payload) -> int:
    return len(payload.data)


def test_a_finished_call_leaves_its_function_and_arguments_to_the_caller(slurm):
    # Before: the batch base kept every job's spec (function and arguments) for the session's life.
    import gc
    import weakref

    payloads = [Payload(1024**2) for _ in range(3)]
    refs = [weakref.ref(p) for p in payloads]
    futures = [cluster(profile=slurm)(payload_size).submit(p) for p in payloads]
    assert [f.result(timeout=120) for f in futures] == [1024**2] * 3
    del payloads, futures
    gc.collect()
    assert [ref() for ref in refs] == [None] * 3, "the session holds nothing of a call its caller let go"


def test_slurm_environment_inside_the_job(slurm):
    fn = cluster(profile=slurm, cores=2)(slurm_env)
    future = fn.submit()
    env = future.result(timeout=60)
    assert env["SLURM_JOB_ID"] == future.job_id
    assert env["CLUSTRIX_JOB_ID"] == future.job_id
    assert env["SLURM_CPUS_PER_TASK"] == "2"
    assert env["CLUSTRIX_CORES"] == "2"
    assert env["SLURM_JOB_PARTITION"] == "debug"
    assert future.job.status.state is JobState.COMPLETED


def wait_for_file(path: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return "timed out"
        time.sleep(0.1)
    return "released"


def test_allocation_as_the_scheduler_sees_it(slurm, tmp_path):
    fn = cluster(profile=slurm, cores=2, memory="300MB", time="00:10:00", partition="debug")(wait_for_file)
    release = tmp_path / "release"
    future = fn.submit(str(release), 60)
    wait_for(lambda: future.state is JobState.RUNNING, 30, "the job to run")
    running = scontrol_job(fn, future.job_id)
    release.touch()
    assert future.result(timeout=60) == "released"
    assert running["JobState"] == "RUNNING"
    assert running["NumCPUs"] == "2"
    assert "mem=300M" in running["TRES"]
    assert running["TimeLimit"] == "00:10:00"
    assert running["Partition"] == "debug"
    assert running["JobName"] == "wait_for_file"
    finished = settled_job(fn, future.job_id)
    assert finished["JobState"] == "COMPLETED"
    assert finished["ExitCode"] == "0:0"


def transform_file(source: str, target: str) -> str:
    text = Path(source).read_text()
    Path(target).write_text(text.upper())
    return os.uname().nodename


def test_file_io_on_the_node(slurm, tmp_path):
    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("written here, read there\n")
    node = cluster(profile=slurm)(transform_file)(str(source), str(target))
    assert target.read_text() == "WRITTEN HERE, READ THERE\n"
    assert node


# -- how jobs end ---------------------------------------------------------------------------------


def test_exception_type_round_trips_with_remote_traceback(slurm):
    fn, future = batch_cases.an_exception_comes_back_with_its_type_and_remote_traceback(slurm)
    assert settled_job(fn, future.job_id)["ExitCode"] == "1:0", "the runner exits 1 when the call raised"


def test_exit_code_reaches_job_failed_error(slurm):
    fn, future = batch_cases.an_exit_code_reaches_job_failed_error(slurm)
    assert settled_job(fn, future.job_id)["ExitCode"] == "3:0"


def test_memory_limit_kill_is_out_of_memory(slurm):
    fn, future, _ = batch_cases.a_call_over_its_memory_is_out_of_memory(slurm, "100MB", 600)
    # Slurm main enforces memory with cgroups, as sites do: the kernel kills at the limit.
    assert settled_job(fn, future.job_id)["JobState"] == "OUT_OF_MEMORY"


def allocate(megabytes: int) -> int:
    return len(b"x" * (megabytes * 1024**2))


def test_a_call_over_its_memory_is_killed_however_fast_it_returns(slurm):
    # Sampled every 2 s (OverMemoryKill without cgroups), a call that allocates 2 GB and returns at
    # once went unseen: memory="200MB" was no limit. The kernel's limit holds at any speed.
    fn = cluster(profile=slurm, memory="200MB")(allocate)
    with pytest.raises(JobOutOfMemoryError, match=r"asked 200M, Slurm's sampled peak \d+ MiB"):
        fn(2000)
    assert fn(50) == 50 * 1024**2


def test_a_map_call_over_the_clusters_default_memory_is_out_of_memory(slurm):
    # No memory= asked: the cluster's default (DefMemPerCPU=100M) holds, for a worker's call too.
    futures = cluster(profile=slurm)(allocate).map([400, 1])
    with pytest.raises(JobOutOfMemoryError, match="out of memory inside its worker"):
        futures[0].result(timeout=120)
    assert futures[1].result(timeout=120) == 1024**2


@pytest.mark.expensive
def test_time_limit_is_job_timeout_error(slurm):
    fn, future, _ = batch_cases.a_call_over_its_time_limit_is_a_timeout(slurm, "00:01:00", 200)
    assert settled_job(fn, future.job_id)["JobState"] == "TIMEOUT"


def test_a_limit_in_seconds_holds_to_the_second_though_slurm_counts_minutes(slurm):
    # Slurm ignores the seconds of a time limit and is asked for the next whole minute; the runner
    # holds the call to its 3 s: a call that sleeps 60 s must end in JobTimeoutError long before.
    fn = cluster(profile=slurm, time="00:00:03")(sleep_for)
    future = fn.submit(60)
    with pytest.raises(JobTimeoutError) as info:
        future.result(timeout=45)
    assert info.value.state is JobState.TIMEOUT
    assert "time limit of 3 s" in future.job.status.reason
    assert scontrol_job(fn, future.job_id)["TimeLimit"] == "00:01:00"
    meta = future.job.meta
    assert meta["outcome"] == "timed out" and meta["time_limit"] == 3


def test_a_chunk_past_a_limit_in_seconds_keeps_the_values_of_calls_that_returned(slurm):
    fn = cluster(profile=slurm, time="00:00:04")(sleep_for)
    first, second, third = fn.map([0, 60, 0], chunksize=3)
    assert first.result(timeout=45) == "woke"
    for future in (second, third):
        with pytest.raises(JobTimeoutError):
            future.result(timeout=45)


@pytest.mark.expensive
def test_a_chunk_killed_at_its_time_limit_keeps_the_values_of_calls_that_returned(slurm):
    fn = cluster(profile=slurm, time="00:01:00")(sleep_for)
    futures = fn.map([1, 1, 300, 1], chunksize=4)
    assert len({f.job_id for f in futures}) == 1, "one task runs the four calls in turn"
    assert [f.result(timeout=200) for f in futures[:2]] == ["woke", "woke"]
    for future in futures[2:]:
        with pytest.raises(JobTimeoutError):
            future.result(timeout=200)


def test_a_chunk_cancelled_midway_keeps_the_values_of_calls_that_returned(slurm):
    fn = cluster(profile=slurm)(sleep_for)
    first, second, third = fn.map([0, 300, 0], chunksize=3)
    wait_for(lambda: Path(first.job.directory, "result.pkl").exists(), 60, "the first call to return")
    fn.session().backend.cancel([second.job_id])  # as `clustrix cancel` would: the whole task
    assert first.result(timeout=60) == "woke"
    for future in (second, third):
        with pytest.raises(clustrix.JobCancelledError):
            future.result(timeout=60)


def test_cancel_ends_the_job_in_slurm(slurm):
    fn = cluster(profile=slurm)(sleep_for)
    future = fn.submit(300)
    wait_for(lambda: future.state is JobState.RUNNING, 30, "the job to run")
    assert future.cancel()
    wait_for(lambda: scontrol_job(fn, future.job_id)["JobState"] == "CANCELLED", 30, "scontrol to say CANCELLED")
    wait_for(lambda: future.job.state is JobState.CANCELLED, 30, "the monitor to see CANCELLED")


# -- cores, partitions, arrays ---------------------------------------------------------------------


def test_parallel_pmap_uses_the_allocated_cores(slurm):
    batch_cases.pmap_runs_on_the_allocated_cores_at_once(slurm)


def test_partition_long(slurm):
    fn = cluster(profile=slurm, partition="long")(slurm_env)
    future = fn.submit()
    assert future.result(timeout=60)["SLURM_JOB_PARTITION"] == "long"
    assert scontrol_job(fn, future.job_id)["Partition"] == "long"


def task_identity(x: int) -> tuple[int, str, str]:
    return x * x, os.environ["SLURM_ARRAY_JOB_ID"], os.environ["SLURM_ARRAY_TASK_ID"]


def test_a_worker_runs_its_calls_in_one_warm_process_until_one_crashes(slurm):
    worker_cases.a_worker_runs_its_calls_in_one_warm_process_until_one_crashes(slurm)


def test_map_of_20_is_one_array_of_workers(slurm):
    variables = ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID")
    fn, futures, results = batch_cases.a_map_is_one_array_of_workers(slurm, 20, variables)
    assert {r[1] for r in results} == {futures[0].job_id.split("#")[0]}, "the array's id is the calls' prefix"
    # Each call knows the worker task it ran in, as the scheduler names it (the validator asks Slurm about it).
    backend = fn.session().backend
    assert [backend.scheduler_job(f.job_id) for f in futures] == [f"{r[1]}_{r[2]}" for r in results]


def test_failed_array_keeps_its_batch_directory(slurm):
    fn = cluster(profile=slurm)(int)
    before = batch_dirs(fn)
    futures = fn.map(["1", "x"])
    assert futures[0].result(timeout=120) == 1
    with pytest.raises(ValueError):
        futures[1].result(timeout=120)
    kept = batch_dirs(fn) - before
    assert len(kept) == 1, "kept for its Slurm output, as the failed job's directory is"
    fn.session().transport.remove_trees([kept.pop()])


def test_chunksize_runs_several_calls_per_task(slurm):
    futures = cluster(profile=slurm)(task_identity).map(range(10), chunksize=4)
    results = [f.result(timeout=120) for f in futures]
    assert [r[0] for r in results] == [x * x for x in range(10)]
    tasks = [f"{r[1]}_{r[2]}" for r in results]
    assert tasks == [f.job_id for f in futures]
    assert [tasks.count(t) for t in dict.fromkeys(tasks)] == [4, 4, 2]


# -- workers that claim calls ----------------------------------------------------------------------


def slurm_command(fn: ClusterFunction, *argv: str) -> str:
    backend = fn.session().backend
    result = backend.transport.run(list(argv), env={"SLURM_CONF": backend.config.option("slurm_conf")})
    assert result.ok, result.stderr
    return result.stdout


def worker_of(future: clustrix.ClusterFuture) -> str:
    """The worker task a call ran in, as the call itself saw it."""
    env = future.job.meta["env"]
    return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"


def array_tasks(fn: ClusterFunction, array_id: str) -> dict[str, str]:
    """Each task of an array with its state, from accounting (tasks that never started included)."""
    out = slurm_command(fn, "sacct", "-n", "-P", "-X", "-j", array_id, "-o", "JobID,State")
    return dict(line.split("|")[:2] for line in out.splitlines() if line)


def test_two_workers_on_two_cpus_drain_a_map_of_50(slurm):
    fn = cluster(profile=slurm, cores=1)(task_identity)
    total = int(slurm_command(fn, "sinfo", "-h", "-p", "debug", "-o", "%C").strip().split("/")[-1])
    futures = fn.map(range(50))
    assert [f.result(timeout=300)[0] for f in futures] == [x * x for x in range(50)]
    used = {worker_of(f) for f in futures}
    assert 1 <= len(used) <= total, f"{len(used)} workers ran the calls on {total} CPUs"
    array_id = futures[0].job_id.split("#")[0]
    # The workers that never started were cancelled in one go once every call was claimed.
    # sacct folds the tasks that never started into one CANCELLED line: 12_[2-49], or the
    # array's own id when all of them were still pending.
    tasks = wait_for(
        lambda: (t := array_tasks(fn, array_id)) and all(s not in ("PENDING", "RUNNING") for s in t.values()) and t,
        60,
        "accounting to show the array ended",
    )
    ran = [task for task, state in tasks.items() if "[" not in task and "_" in task]
    folded = [task for task, state in tasks.items() if state.startswith("CANCELLED") and task not in ran]
    assert len(ran) <= total + 2 and len(folded) == 1, tasks


def sleep_then(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pytest.mark.expensive
def test_a_call_over_its_time_limit_fails_alone_inside_its_worker(slurm):
    fn = cluster(profile=slurm, cores=1, time="00:01:00")(sleep_then)
    futures = fn.map([0.1, 0.1, 200, 0.1, 0.1, 0.1])
    with pytest.raises(JobTimeoutError, match="killed by its worker at the call's time limit"):
        futures[2].result(timeout=300)
    assert [f.result(timeout=60) for i, f in enumerate(futures) if i != 2] == [0.1] * 5
    assert futures[2].state is JobState.TIMEOUT


def test_a_worker_killed_mid_map_loses_no_result_and_its_calls_still_complete(slurm):
    fn = cluster(profile=slurm, cores=1, poll_interval=0.5, poll_interval_max=1.0)(sleep_then)
    futures = fn.map([1.0] * 12)
    array_id = futures[0].job_id.split("#")[0]
    # Every worker of the array, running or not: the calls left must go to workers started anew.
    outcomes = kill_workers_mid_map(futures, lambda: slurm_command(fn, "scancel", array_id))
    assert sum(v == 1.0 for v in outcomes.values()) >= 10
    relaunched = {worker_of(f).split("_")[0] for f in futures if f.exception() is None} - {array_id}
    assert relaunched, "the calls left ran in workers started after the kill"


def test_with_retries_the_calls_of_a_worker_killed_mid_map_run_again_in_its_queue(slurm):
    fn = cluster(profile=slurm, cores=1, retries=2, poll_interval=0.5, poll_interval_max=1.0)(sleep_then)
    futures = fn.map([1.0] * 12)
    array_id = futures[0].job_id.split("#")[0]
    outcomes = kill_workers_mid_map(futures, lambda: slurm_command(fn, "scancel", array_id))
    assert list(outcomes.values()) == [1.0] * 12, "no call is lost: the ones the kill ended ran again"
    retried = [f for f in futures if f.job.retries]
    assert retried, "a call was running in a killed worker"
    for future in retried:
        # Back in its map's queue (the same call id), run by a worker started after the kill.
        assert future.job_id.split("#")[0] == array_id
        assert worker_of(future).split("_")[0] != array_id
        assert JobState.REQUEUED in [state for state, _ in future.job.history]


def waiting_client(tmp_path: Path, body: str) -> subprocess.Popen:
    """A program that defines ``forever`` (a job that sleeps 10 minutes), runs ``body`` and waits in it."""
    script = tmp_path / "wait.py"
    script.write_text(
        "import sys, time\n"
        "from pathlib import Path\n"
        "import cloudpickle\n"
        "from clustrix import cluster\n"
        "cloudpickle.register_pickle_by_value(sys.modules[__name__])\n"
        "def forever(*_args):\n"
        "    time.sleep(600)\n" + body
    )
    return subprocess.Popen([sys.executable, str(script)], env=os.environ, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_while_waiting_on_a_map_cancels_its_workers(slurm, tmp_path):
    id_file = tmp_path / "array_id"
    proc = waiting_client(
        tmp_path,
        f"futures = cluster(profile={slurm!r}, cores=1)(forever).map(range(10))\n"
        f"Path({str(id_file)!r}).write_text(futures[0].job_id.split('#')[0])\n"
        "futures[0].result()\n",
    )
    array_id = wait_for(lambda: id_file.exists() and id_file.read_text(), 60, "the array id")
    fn = cluster(profile=slurm)(add)
    wait_for(lambda: "RUNNING" in array_tasks(fn, array_id).values(), 60, "a worker to run")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" in stderr
    wait_for(lambda: not slurm_command(fn, "squeue", "-h", "-j", array_id).strip(), 60, "every worker to be cancelled")


# -- the other clusters ----------------------------------------------------------------------------


def test_without_accounting(cluster_profile):
    profile = cluster_profile("slurm-noacct")
    assert cluster(profile=profile)(add)(10, 32) == 42
    fn = cluster(profile=profile)(exit_hard)
    assert not fn.session().backend.accounting
    with pytest.raises(JobFailedError) as info:
        fn(3)
    assert info.value.exit_code == 3
    futures = cluster(profile=profile)(add).map(range(5), range(5), chunksize=2)
    assert [f.result(timeout=60) for f in futures] == [0, 2, 4, 6, 8]


# -- calls on several tasks (slurm-multi: three nodes n1..n3 on this machine, NodeAddr 127.0.0.1) ------


def rank_report() -> tuple[clustrix.TaskEnvironment, str, str]:
    """This rank's environment as clustrix describes it, and the node and rank Slurm says it has."""
    return clustrix.task_environment(), os.environ["SLURMD_NODENAME"], os.environ["SLURM_PROCID"]


def all_reduce_squares() -> int:
    """Sum (rank + 1)**2 over every rank through rank 0, over plain sockets; every rank gets the sum."""
    import socket

    env = clustrix.task_environment()
    mine = (env.rank + 1) ** 2
    deadline = time.monotonic() + 60
    if env.rank == 0:
        with socket.create_server((env.main_address, env.main_port), backlog=env.world_size) as server:
            server.settimeout(60)
            peers = [server.accept()[0] for _ in range(env.world_size - 1)]
            total = mine + sum(int(peer.makefile().readline()) for peer in peers)
            for peer in peers:
                with peer:
                    peer.sendall(f"{total}\n".encode())
        return total
    while True:
        try:
            peer = socket.create_connection((env.main_address, env.main_port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with peer:
        peer.sendall(f"{mine}\n".encode())
        return int(peer.makefile().readline())


def fail_on_rank_2() -> int:
    env = clustrix.task_environment()
    if env.rank == 2:
        raise LookupError(f"rank {env.rank} has no shard")
    time.sleep(120)
    return env.rank


def test_four_ranks_all_reduce_over_sockets_and_agree(cluster_profile):
    profile = cluster_profile("slurm-multi")
    assert cluster(profile=profile, nodes=2, tasks_per_node=2)(all_reduce_squares)() == 1 + 4 + 9 + 16
    # Every rank, not only rank 0, ended the exchange with the sum.
    everyone = cluster(profile=profile, nodes=2, tasks_per_node=2, gather="all")(all_reduce_squares)
    assert everyone() == [30, 30, 30, 30]


def test_gather_all_returns_every_ranks_environment_in_rank_order(cluster_profile):
    fn = cluster(profile=cluster_profile("slurm-multi"), nodes=2, tasks_per_node=2, gather="all")(rank_report)
    future = fn.submit()
    reports = future.result(timeout=120)
    envs = [env for env, _, _ in reports]
    assert [env.rank for env in envs] == [0, 1, 2, 3]
    assert [int(procid) for _, _, procid in reports] == [0, 1, 2, 3]
    assert [env.local_rank for env in envs] == [0, 1, 0, 1]
    assert {env.world_size for env in envs} == {4}
    record = scontrol_job(fn, future.job_id)
    assert record["NumNodes"] == "2"
    nodes = envs[0].nodes
    assert len(nodes) == 2 and set(nodes) <= {"n1", "n2", "n3"}
    assert all(env.nodes == nodes for env in envs)
    # Block distribution: ranks 0 and 1 on the first node, 2 and 3 on the second, as Slurm says.
    assert [node for _, node, _ in reports] == [nodes[0], nodes[0], nodes[1], nodes[1]]
    assert {(env.job_id, env.main_address, env.main_port) for env in envs} == {
        (future.job_id, "127.0.0.1", main_port(future.job_id))
    }
    assert len(future.job.metas) == 4 and [meta["rank"] for meta in future.job.metas] == [0, 1, 2, 3]


def test_two_nodes_one_task_each_on_the_multi_node_cluster(cluster_profile):
    profile = cluster_profile("slurm-multi")
    assert cluster(profile=profile)(add)(10, 32) == 42
    fn = cluster(profile=profile, nodes=2, gather="all")(rank_report)
    future = fn.submit()
    reports = future.result(timeout=120)
    assert [env.rank for env, _, _ in reports] == [0, 1]
    assert len({node for _, node, _ in reports}) == 2
    assert scontrol_job(fn, future.job_id)["NumNodes"] == "2"
    # The default: the call's value is rank 0's.
    env, node, _ = cluster(profile=profile, nodes=2)(rank_report)()
    assert (env.rank, env.world_size, node) == (0, 2, env.nodes[0])


def test_a_rank_that_raises_fails_the_call_with_its_exception_and_rank(cluster_profile):
    fn = cluster(profile=cluster_profile("slurm-multi"), nodes=2, tasks_per_node=2, time="00:05:00")(fail_on_rank_2)
    future = fn.submit()
    started = time.monotonic()
    with pytest.raises(LookupError, match="rank 2 has no shard") as raised:
        future.result(timeout=120)
    # The other ranks were ended when rank 2 failed, not left sleeping until their time limit.
    assert time.monotonic() - started < 60
    assert raised.value.rank == 2
    assert "in fail_on_rank_2" in raised.value.remote_traceback
    assert any(f"job {future.job_id} (rank 2 of 4) on " in note for note in raised.value.__notes__)
    assert future.job.state is JobState.FAILED


def rank_and_env() -> tuple[int, str, list[str]]:
    return clustrix.task_environment().rank, os.environ["X"], sys.argv[1:]


def test_hostile_paths_and_values_reach_every_rank_byte_exact(cluster_profile, tmp_path, monkeypatch):
    """The srun line carries the runner's path and the job directory: quoted, never run as shell."""
    base = cluster_profile("slurm-multi")
    tag = uuid.uuid4().hex
    markers = [f"/tmp/cx-slurm-tasks-pwned-{tag}-{i}" for i in range(3)]
    value = f"$(touch {markers[0]}); `touch {markers[1]}`; ' \" \\n %j ${{PATH}}"
    workdir = f"{profile_table(base)['workdir']}/cx tasks 'q' \"dq\" $(touch {markers[2]}) `x` %j {tag}"
    use_variant(tmp_path, monkeypatch, base, "hostile-tasks", workdir=workdir)
    fn = cluster(profile="hostile-tasks", nodes=2, env={"X": value}, gather="all")(rank_and_env)
    try:
        reports = fn()
        assert [rank for rank, _, _ in reports] == [0, 1]
        assert all(got == value for _, got, _ in reports)
        assert all(argv[0].startswith(workdir + "/") for _, _, argv in reports)
        assert not any(Path(m).exists() for m in markers), "a hostile value ran as shell"
    finally:
        fn.session().transport.remove_trees([workdir])


def test_attach_collects_every_rank_of_a_multi_task_call(cluster_profile, tmp_path, monkeypatch):
    """The journal keeps how many ranks a call had and what it gathers: a new client reads them all."""
    use_variant(tmp_path, monkeypatch, cluster_profile("slurm-multi"), "kept", cleanup="never")
    fn = cluster(profile="kept", nodes=2, tasks_per_node=2, gather="all")(scaled_rank)
    future = fn.submit(3)
    assert future.result(timeout=120) == [0, 3, 6, 9]
    try:
        assert clustrix.attach(future.job_id).result(timeout=120) == [0, 3, 6, 9]
    finally:
        fn.session().transport.remove_trees([future.job.directory])


def scaled_rank(factor: int) -> int:
    return factor * clustrix.task_environment().rank


def test_a_map_of_multi_task_calls_runs_each_as_its_own_job(cluster_profile):
    fn = cluster(profile=cluster_profile("slurm-multi"), nodes=2, gather="all")(scaled_rank)
    futures = fn.map([1, 10])
    assert [future.result(timeout=120) for future in futures] == [[0, 1], [0, 10]]
    # Two jobs of Slurm's own, not calls claimed by workers nor tasks of an array.
    assert all(future.job_id.isdigit() for future in futures)
    assert len({future.job_id for future in futures}) == 2
    assert all(scontrol_job(fn, future.job_id)["NumNodes"] == "2" for future in futures)


def test_slurm_over_ssh(cluster_profile, tmp_path, monkeypatch):
    cluster_profile("ssh-local")
    cluster_profile("slurm")
    fn, future = batch_cases.runs_over_ssh_as_the_hosts_user(
        "slurm", tmp_path, monkeypatch, "/home/cxuser/slurm-jobs", "SLURM_JOB_ID"
    )
    assert scontrol_job(fn, future.job_id)["UserId"].startswith("cxuser(")


def test_sbatch_refusal_is_submission_error_in_its_own_words(slurm):
    with pytest.raises(SubmissionError, match="invalid partition"):
        cluster(profile=slurm, partition="no-such-partition")(add)(1, 2)


@pytest.mark.expensive
def test_static_chunks_past_max_array_size_split_into_arrays(cluster_profile):
    # The three-node cluster: 12 cores get through a thousand tasks six times faster than 2.
    fn = cluster(profile=cluster_profile("slurm-multi"))(add)
    limit = fn.session().backend.max_array_size()
    futures = fn.map(range(limit + 1), range(limit + 1), chunksize=1)
    assert [f.result(timeout=900) for f in futures] == [2 * x for x in range(limit + 1)]
    arrays = [f.job_id.split("_")[0] for f in futures]
    assert len(set(arrays)) == 2
    assert arrays.count(arrays[-1]) == 1


# -- the validator, with Slurm's own view ----------------------------------------------------------


@pytest.mark.parametrize(("profile", "source"), [("slurm", "sacct"), ("slurm-noacct", "runner")])
def test_validator_sees_what_slurm_allocated_and_accounted(cluster_profile, cluster_validator, profile, source):
    # The job holds its memory 3 s: long enough for Slurm's accounting to sample the step
    # (JobAcctGatherFrequency=2).
    result = batch_cases.the_validator_sees_what_was_allocated(
        cluster_validator, cluster_profile(profile), "debug", memory="400MB"
    )
    assert {c.name: c for c in result.checks}["allocated memory"].actual == 400 * 1024**2
    metrics = result.metrics
    assert metrics.source == source
    assert metrics.started_at <= metrics.ended_at and metrics.run_time >= 3
    assert metrics.peak_memory is not None and metrics.peak_memory >= 50 * 1024**2
    if source == "sacct":
        assert metrics.allocated_cores == 2 and metrics.allocated_memory == 400 * 1024**2


# -- dependencies ----------------------------------------------------------------------------------


def slow(x, seconds: float = 2.0):
    time.sleep(seconds)
    return x


@pytest.mark.parametrize("profile", ["slurm", "slurm-noacct"])
def test_future_argument_becomes_afterok_and_passes_its_value(cluster_profile, profile):
    name = cluster_profile(profile)
    upstream = cluster(profile=name)(slow).submit([1, 2, 3])
    downstream = cluster(profile=name)(touch).submit(upstream)
    record = scontrol_job(cluster(profile=name)(touch), downstream.job_id)
    assert record["Dependency"].startswith(f"afterok:{upstream.job_id}")
    assert record["JobState"] == "PENDING" and record["Reason"] == "Dependency"
    assert downstream.result(timeout=300) == [1, 2, 3]


def test_array_waits_for_its_dependency(slurm):
    upstream = cluster(profile=slurm)(slow).submit(10)
    futures = cluster(profile=slurm)(add).after(upstream).map(range(3), range(3))
    assert [f.result(timeout=300) for f in futures] == [0, 2, 4]
    assert all(f.job.meta["start"] >= upstream.job.meta["end"] for f in futures)


def test_jobs_waiting_for_calls_of_a_map_are_held_then_released_or_cancelled(slurm, tmp_path):
    upstream = cluster(profile=slurm)(slow).map([10, 20], [3, 3])
    fn = cluster(profile=slurm)(add)
    waiting = fn.after(upstream[1]).submit(1, 2)
    # A call run by a worker has no Slurm id to depend on: the job is held until the client sees it end.
    assert scontrol_job(fn, waiting.job_id)["Reason"] == "JobHeldUser"
    assert waiting.result(timeout=300) == 3
    assert upstream[1].result(timeout=60) == 20
    assert waiting.job.meta["start"] >= upstream[1].job.meta["end"]
    failing = cluster(profile=slurm)(int).map(["1", "x"])
    marker = tmp_path / "ran"
    doomed = cluster(profile=slurm)(touch).after(failing[1]).submit(1, str(marker))
    with pytest.raises(clustrix.DependencyFailedError):
        doomed.result(timeout=300)
    assert doomed.state is JobState.CANCELLED
    assert not marker.exists()


@pytest.mark.parametrize("profile", ["slurm", "slurm-noacct"])
def test_failed_upstream_cancels_dependants_instead_of_leaving_them_pending(cluster_profile, profile, tmp_path):
    # slurm-noacct has no DependencyParameters=kill_invalid_depend, like most sites: the job's
    # own --kill-on-invalid-dep must end it.
    name = cluster_profile(profile)
    _, downstream = batch_cases.a_failed_upstream_cancels_its_dependant(name, tmp_path)
    record = scontrol_job(cluster(profile=name)(touch), downstream.job_id)
    assert (record["JobState"], record["Reason"]) == ("CANCELLED", "DependencyNeverSatisfied")


def test_ctrl_c_while_waiting_cancels_the_slurm_job(slurm, tmp_path):
    id_file = tmp_path / "job_id"
    proc = waiting_client(
        tmp_path,
        f"fn = cluster(profile={slurm!r})(forever)\n"
        "real_submit = fn.submit\n"
        "def submit_and_tell(*a, **k):\n"
        "    future = real_submit(*a, **k)\n"
        f"    Path({str(id_file)!r}).write_text(future.job_id)\n"
        "    return future\n"
        "fn.submit = submit_and_tell\n"
        "fn()\n",
    )
    job_id = wait_for(lambda: id_file.exists() and id_file.read_text(), 60, "the job id")
    fn = cluster(profile=slurm)(add)
    wait_for(lambda: scontrol_job(fn, job_id)["JobState"] == "RUNNING", 60, "the job to run")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" in stderr
    wait_for(lambda: scontrol_job(fn, job_id)["JobState"] == "CANCELLED", 60, "scancel to take effect")


def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def slurm_knows(fn: ClusterFunction, job_id: str) -> bool:
    backend = fn.session().backend
    result = backend.transport.run(
        ["scontrol", "-o", "show", "job", job_id], env={"SLURM_CONF": backend.config.option("slurm_conf")}
    )
    return result.ok


@pytest.mark.expensive
def test_jobs_slurm_forgot_are_resolved_from_the_runners_own_record(cluster_profile):
    # slurm-multi purges finished jobs (MinJobAge=2, purged within about a minute). With polls 100 s
    # apart, the first poll sees the jobs queued and the second finds Slurm has forgotten them.
    profile = cluster_profile("slurm-multi")
    slow = {"profile": profile, "poll_interval": 100.0, "poll_interval_max": 100.0}
    returned = cluster(**slow)(add).submit(1, 2)
    killed = cluster(**slow)(kill_self).submit()
    probe = cluster(profile=profile)(add)
    wait_for(
        lambda: not slurm_knows(probe, returned.job_id) and not slurm_knows(probe, killed.job_id),
        150,
        "Slurm to forget both jobs",
    )
    assert returned.result(timeout=200) == 3
    assert returned.job.status.reason == "resolved from the job's result file"
    assert returned.state is JobState.COMPLETED
    with pytest.raises(JobFailedError, match="ended without a result") as info:
        killed.result(timeout=200)
    assert info.value.state is JobState.UNKNOWN, "a vanished job without a result is never called completed"


@pytest.mark.parametrize("profile", ["slurm", "slurm-noacct"])
def test_one_scheduler_query_per_poll_for_many_jobs(cluster_profile, profile):
    def query(argv: list[str]) -> str | None:
        return "query" if argv[0] in ("sacct", "squeue", "scontrol") and argv[1:3] != ["show", "config"] else None

    per_poll = batch_cases.scheduler_commands_per_poll(cluster_profile(profile), query, lambda fn: fn.map(range(12)))
    # However many tasks: sacct, then squeue for tasks accounting has not recorded yet, then one
    # scontrol for the array's exit codes; without accounting, squeue and that scontrol.
    assert max(counts.get("query", 0) for counts in per_poll) <= (3 if profile == "slurm" else 2), per_poll


def span(x):
    start = time.time()
    time.sleep(1)
    return start, time.time()


def test_array_throttle_runs_one_task_at_a_time(cluster_profile):
    fn = cluster(profile=cluster_profile("slurm"), array_throttle=1)(span)
    futures = fn.map(range(3))
    backend = fn.session().backend
    shown = backend.transport.run(
        ["scontrol", "-o", "show", "job", futures[0].job_id.split("#")[0]],
        env={"SLURM_CONF": backend.config.option("slurm_conf")},
    )
    assert "ArrayTaskThrottle=1" in shown.stdout
    spans = sorted(f.result(timeout=300) for f in futures)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans


def report_env():
    return os.environ["X"], sys.argv[1:]


def test_hostile_names_env_values_and_paths_reach_slurm_jobs_byte_exact(slurm, tmp_path, monkeypatch):
    with batch_cases.a_hostile_job(
        slurm,
        tmp_path,
        monkeypatch,
        report_env,
        value_tail=" %j %A ${PATH}",
        workdir_tail=" %A ",
        name="a;b$(touch {marker})\n#SBATCH --wrap=x",
    ):
        pass


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("partition", "debug\ntouch {marker}"),
        ("account", "x\n#SBATCH --wrap='touch {marker}'"),
        ("extra", ["--comment=ok", "--comment=x\ntouch {marker}"]),
        ("extra", "--comment=a string, not a list"),
        ("setup", "touch {marker}"),
        ("env", {"X; touch {marker}": "1"}),
    ],
)
def test_hostile_directive_values_are_refused_before_anything_reaches_slurm(slurm, tmp_path, key, value):
    batch_cases.a_hostile_value_is_refused_before_anything_reaches_the_scheduler(slurm, tmp_path, key, value)


# -- a scheduler that is down ------------------------------------------------------------------------

CLUSTERS = Path(__file__).resolve().parents[1] / "clusters"
STATE = Path(os.environ.get("CLUSTRIX_TEST_STATE", "/var/lib/clustrix-test"))


def test_submitting_to_a_controller_that_is_down_is_backend_unavailable(cluster_profile, tmp_path, monkeypatch):
    base = cluster_profile("slurm-noacct")
    conf = tmp_path / "slurm.conf"
    # The same cluster, but its controller's port has nobody listening: as if slurmctld were down.
    real_conf = Path(profile_table(base)["slurm_conf"]).read_text()
    conf.write_text(re.sub(r"(?m)^SlurmctldPort=.*$", "SlurmctldPort=1", real_conf))
    use_variant(tmp_path, monkeypatch, base, "down", slurm_conf=str(conf), workdir=str(tmp_path / "jobs"))
    with pytest.raises(clustrix.BackendUnavailableError, match="Unable to contact slurm controller"):
        cluster(profile="down")(add)(1, 2)
    assert list((tmp_path / "jobs").iterdir()) == [], "nothing is left staged"


@pytest.mark.expensive
def test_controller_going_down_while_waiting_fails_the_future_then_recovers(cluster_profile):
    profile = cluster_profile("slurm-noacct")
    fn = cluster(profile=profile, poll_failure_timeout=20.0, poll_interval_max=2.0)(slow)
    future = fn.submit("survives", 60)
    wait_for(lambda: future.state is JobState.RUNNING, 60, "the job to run")
    pid_file = STATE / "run" / "slurm-noacct-slurmctld.pid"
    os.kill(int(pid_file.read_text()), signal.SIGTERM)
    try:
        with pytest.raises(clustrix.BackendUnavailableError, match="no answer from the scheduler"):
            future.result(timeout=180)
    finally:
        subprocess.run([str(CLUSTERS / "up"), "slurm"], check=True, timeout=300, capture_output=True)
    assert cluster(profile=profile)(add)(20, 22) == 42


# -- checkpoint and requeue ---------------------------------------------------------------------------


def test_a_counter_that_needs_three_minutes_finishes_in_one_minute_jobs(slurm):
    # 150 one-second steps in jobs of one minute, each checkpointed 6 s before its limit: three
    # jobs at least. The same count without a checkpoint method is killed at the limit.
    checkpoint_cases.a_counter_past_its_time_limit_finishes_after_requeues(
        slurm, "00:01:00", steps=150, step=1.0, requeues=2, timeout=600
    )


def test_a_preempted_job_checkpoints_on_term_and_resumes(slurm):
    # A preempting Slurm TERMs every process of the job; here scancel sends the same TERM to the
    # batch step (--full) without ending the job, and the runner checkpoints on it.
    fn = cluster(profile=slurm, cores=1)(checkpoint_cases.Counter(40, 0.5))
    future = fn.submit(7)
    wait_for(lambda: "counting from 0" in future.stdout(), 60, "the call to start counting")
    first = future.job_id
    slurm_command(fn, "scancel", "--full", "--signal=TERM", first)
    value, jobs = future.result(timeout=180)
    assert value == 47
    assert future.job.requeues == 1 and future.job_id != first
    assert jobs == [first, future.job_id]


def test_a_checkpointable_call_on_several_tasks_is_refused(cluster_profile):
    # Every rank would write the one checkpoint: refused before anything is staged.
    fn = cluster(profile=cluster_profile("slurm-multi"), nodes=2)(checkpoint_cases.Counter(1, 0.0))
    with pytest.raises(ConfigError, match="a checkpointable call runs on one task"):
        fn.submit(0)
