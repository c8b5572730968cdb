"""Calls on several tasks, without a scheduler: the task environment, and the ranks' results combined.

Each rank's result is written by the real runner (``run_job`` with that rank) into a real job
directory, then read back through ``clustrix.results.outcome`` as the session does. The real
launch by srun on a multi-node Slurm cluster is tested in tests/real_world.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from pathlib import Path

import pytest

from clustrix import ConfigError, NotInJobError, Resources, ResultMissingError, ResultTamperedError, cluster, runner
from clustrix.environment import MAIN_PORT_BASE, MAIN_PORT_SPAN, TaskEnvironment, main_port
from clustrix.job import Job
from clustrix.results import outcome
from clustrix.spec import JobSpec
from clustrix.state import JobState, JobStatus
from clustrix.version import __version__

# -- the task environment -------------------------------------------------------------------------


def test_environment_of_a_rank_from_its_variables():
    env = TaskEnvironment.from_variables(
        {
            "CLUSTRIX_JOB_ID": "4242",
            "CLUSTRIX_RANK": "3",
            "CLUSTRIX_LOCAL_RANK": "1",
            "CLUSTRIX_WORLD_SIZE": "4",
            "CLUSTRIX_NODES": "n1,n2",
            "CLUSTRIX_MAIN_ADDRESS": "10.1.2.3",
        }
    )
    assert env == TaskEnvironment(
        job_id="4242",
        rank=3,
        local_rank=1,
        world_size=4,
        nodes=("n1", "n2"),
        main_address="10.1.2.3",
        main_port=MAIN_PORT_BASE + 4242,
    )


def test_a_job_of_one_task_is_a_world_of_one():
    env = TaskEnvironment.from_variables({"CLUSTRIX_JOB_ID": "7"})
    assert (env.rank, env.local_rank, env.world_size) == (0, 0, 1)
    assert env.nodes == (socket.gethostname(),)
    assert env.main_address == "127.0.0.1"
    assert env.main_port == main_port("7")


def test_outside_a_job_there_is_no_task_environment(monkeypatch):
    monkeypatch.delenv("CLUSTRIX_JOB_ID", raising=False)
    with pytest.raises(NotInJobError, match="not inside a clustrix job"):
        __import__("clustrix").task_environment()


def test_main_port_is_the_same_for_every_rank_and_apart_for_jobs_running_together():
    ports = [main_port(str(job)) for job in range(90_000, 90_000 + MAIN_PORT_SPAN)]
    assert len(set(ports)) == MAIN_PORT_SPAN
    assert all(MAIN_PORT_BASE <= port < MAIN_PORT_BASE + MAIN_PORT_SPAN for port in ports)
    assert main_port("123_4") == main_port("123_4") != main_port("123_5")
    assert MAIN_PORT_BASE <= main_port("123_4") < MAIN_PORT_BASE + MAIN_PORT_SPAN


# -- combining the ranks' results -----------------------------------------------------------------


def rank_value(fail_on: tuple[int, ...] = ()) -> int:
    rank = int(os.environ["CLUSTRIX_RANK"])
    if rank in fail_on:
        raise KeyError(f"rank {rank} failed")
    return rank * 10


def run_ranks(tmp_path: Path, monkeypatch, ranks: int, *args) -> tuple[Path, bytes]:
    """Stage one call and run it as each of ``ranks`` ranks with the real runner, as srun would."""
    jobdir = tmp_path / "job"
    jobdir.mkdir()
    key = secrets.token_bytes(32)
    call = {"fn": rank_value, "args": args, "kwargs": {}, "upstream": {}}
    (jobdir / runner.PAYLOAD_FILE).write_bytes(runner.pack("call", call, key, "cloudpickle", __version__))
    (jobdir / runner.KEY_FILE).write_text(key.hex())
    for rank in range(ranks):
        monkeypatch.setenv("CLUSTRIX_RANK", str(rank))
        runner.run_job(str(jobdir), rank)
    return jobdir, key


def combined(jobdir: Path, key: bytes, state: JobState, gather: str = "rank0", ranks: int = 4):
    spec = JobSpec(
        fn=rank_value, args=(), kwargs={}, resources=Resources(nodes=ranks), name="rank_value", gather=gather
    )
    job = Job(key="k", job_id="77", directory=str(jobdir), spec=spec, session=None, hmac_key=key)
    job.update(JobStatus(state))
    files = [jobdir / runner.rank_file(runner.RESULT_FILE, rank) for rank in range(ranks)]
    metas = [jobdir / runner.rank_file(runner.META_FILE, rank) for rank in range(ranks)]
    job.metas = [json.loads(meta.read_text()) if meta.exists() else None for meta in metas]
    return outcome(job, [path.read_bytes() if path.exists() else None for path in files], "")


def test_each_rank_writes_its_own_result_and_rank_0_keeps_the_single_task_names(tmp_path, monkeypatch):
    jobdir, _ = run_ranks(tmp_path, monkeypatch, 3)
    names = sorted(path.name for path in jobdir.iterdir() if path.name.startswith(("result", "meta")))
    assert names == ["meta.1.json", "meta.2.json", "meta.json", "result.1.pkl", "result.2.pkl", "result.pkl"]
    assert [json.loads((jobdir / name).read_text())["rank"] for name in names[:3]] == [1, 2, 0]


def test_the_call_returns_rank_0s_value_or_every_ranks_in_rank_order(tmp_path, monkeypatch):
    jobdir, key = run_ranks(tmp_path, monkeypatch, 4)
    assert combined(jobdir, key, JobState.COMPLETED).value == 0
    done = combined(jobdir, key, JobState.COMPLETED, gather="all")
    assert done.ok and done.value == [0, 10, 20, 30]


def test_a_call_of_one_task_is_the_one_rank_case(tmp_path, monkeypatch):
    jobdir, key = run_ranks(tmp_path, monkeypatch, 1)
    assert combined(jobdir, key, JobState.COMPLETED, ranks=1).value == 0
    assert combined(jobdir, key, JobState.COMPLETED, gather="all", ranks=1).value == [0]


def test_the_lowest_rank_that_raised_fails_the_call_and_is_named(tmp_path, monkeypatch):
    jobdir, key = run_ranks(tmp_path, monkeypatch, 4, (1, 3))
    # Rank 2 was killed (srun's --kill-on-bad-exit) before writing anything.
    (jobdir / "result.2.pkl").unlink()
    error = combined(jobdir, key, JobState.FAILED, gather="all").exception
    assert type(error) is KeyError and error.args == ("rank 1 failed",)
    assert error.rank == 1
    assert any(note.startswith("Remote traceback (job 77 (rank 1 of 4) on ") for note in error.__notes__)
    assert "KeyError: 'rank 1 failed'" in error.remote_traceback


def test_a_rank_without_a_result_is_named(tmp_path, monkeypatch):
    jobdir, key = run_ranks(tmp_path, monkeypatch, 4)
    (jobdir / "result.3.pkl").unlink()
    error = combined(jobdir, key, JobState.COMPLETED).exception
    assert isinstance(error, ResultMissingError)
    assert "no result file for rank 3 of 4" in str(error)


def test_a_rank_result_altered_is_refused_naming_its_file(tmp_path, monkeypatch):
    jobdir, key = run_ranks(tmp_path, monkeypatch, 4)
    data = bytearray((jobdir / "result.2.pkl").read_bytes())
    data[-40] ^= 0xFF
    (jobdir / "result.2.pkl").write_bytes(bytes(data))
    error = combined(jobdir, key, JobState.COMPLETED).exception
    assert isinstance(error, ResultTamperedError)
    assert "result.2.pkl" in str(error)


def test_a_dependant_reads_every_rank_of_its_upstream(tmp_path, monkeypatch):
    jobdir, key = run_ranks(tmp_path, monkeypatch, 3)
    call = {"args": (None,), "kwargs": {"y": None}, "upstream": {0: (str(jobdir), key.hex(), 3, "all")}}
    call["upstream"]["y"] = (str(jobdir), key.hex(), 3, "rank0")
    runner.fill_upstream_values(call)
    assert call["args"] == ([0, 10, 20],)
    assert call["kwargs"] == {"y": 0}


# -- what is refused before anything is submitted -------------------------------------------------


def add(x: int, y: int) -> int:
    return x + y


def test_a_backend_that_runs_a_call_once_refuses_several_tasks(local_profile):
    profile = local_profile()
    for resources in (dict(nodes=2), dict(tasks_per_node=3)):
        fn = cluster(profile=profile, **resources)(add)
        refused = "backend 'local' runs a call only once (backends that run a call on every task: slurm)"
        with pytest.raises(ConfigError, match=re.escape(refused)):
            fn(1, 2)
        with pytest.raises(ConfigError, match="runs a call only once"):
            fn.map([1, 2], [3, 4])
    assert cluster(profile=profile, nodes=1, tasks_per_node=1)(add)(1, 2) == 3


def test_calls_on_several_tasks_are_never_chunked(local_profile):
    fn = cluster(profile=local_profile(), nodes=2)(add)
    with pytest.raises(ConfigError, match="chunksize=2: a call on 2 tasks"):
        fn.map([1, 2], [3, 4], chunksize=2)


def test_gather_takes_rank0_or_all(local_profile):
    profile = local_profile()
    with pytest.raises(ConfigError, match="gather"):
        cluster(profile=profile, gather="some")(add)(1, 2)
    assert cluster(profile=profile, gather="all")(add)(1, 2) == [3]
    assert cluster(profile=profile, gather="rank0")(add)(1, 2) == 3
