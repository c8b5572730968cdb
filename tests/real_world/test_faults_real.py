"""Faults on the real clusters: daemons stopped mid-job, a client killed, Ctrl-C in a map, a big map.

Each test asserts that every result arrived or failed with the right error, and that no job is
left in the scheduler's queue or on disk. Daemons are stopped by the pids in the harness's pid
files and brought back with ``tests/clusters/up``, as an operator would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

import clustrix
from clustrix import JobState, cluster
from clustrix.api import ClusterFunction
from tests.conftest import profile_table, use_variant, wait_for

pytestmark = [pytest.mark.real_world, pytest.mark.cluster_group("slurm")]
cloudpickle.register_pickle_by_value(sys.modules[__name__])

CLUSTERS = Path(__file__).resolve().parents[1] / "clusters"
STATE = Path(os.environ.get("CLUSTRIX_TEST_STATE", "/var/lib/clustrix-test"))


def slow(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x * 2


def stop_daemon(name: str) -> None:
    """SIGTERM the harness's daemon by its pid file, and wait until it is gone."""
    pid = int((STATE / "run" / f"{name}.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 30, f"{name} to stop")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def bring_back(kind: str) -> None:
    subprocess.run([str(CLUSTERS / "up"), kind], check=True, timeout=300, capture_output=True)


def slurm_queue(fn: ClusterFunction, job_ids: list[str]) -> list[str]:
    """The lines squeue still has for these jobs (their arrays), pending or running."""
    backend = fn.session().backend
    bases = sorted({job_id.split("_")[0].split("#")[0] for job_id in job_ids})
    result = backend.run(["squeue", "-h", "-r", "-j", ",".join(bases), "-o", "%i %T"])
    return [line for line in result.stdout.splitlines() if line.strip()]


def left_on_disk(workdir: str) -> list[str]:
    return sorted(os.listdir(workdir)) if os.path.isdir(workdir) else []


@pytest.fixture
def private(tmp_path, monkeypatch):
    """A variant of a profile with a workdir of its own, so leftovers are this test's alone."""

    def make(base: str, **overrides) -> tuple[str, str]:
        workdir = overrides.pop("workdir", str(tmp_path / "jobs"))
        return use_variant(tmp_path, monkeypatch, base, f"{base}-private", workdir=workdir, **overrides), workdir

    return make


# -- the scheduler's daemons ---------------------------------------------------------------------


@pytest.mark.alone
def test_slurmctld_stopped_and_restarted_mid_job_delivers_every_result(cluster_profile, private):
    name, workdir = private(cluster_profile("slurm-noacct"))
    fn = cluster(profile=name)(slow)
    futures = fn.map(range(4), [8] * 4)
    wait_for(lambda: all(f.state is JobState.RUNNING for f in futures[:2]), 60, "the jobs to run")
    stop_daemon("slurm-noacct-slurmctld")
    try:
        time.sleep(5)  # polls fail meanwhile; the jobs run on under slurmd
    finally:
        bring_back("slurm")
    assert [f.result(timeout=180) for f in futures] == [0, 2, 4, 6]
    assert slurm_queue(fn, [f.job_id for f in futures]) == []
    assert left_on_disk(workdir) == []


@pytest.mark.alone
def test_slurmdbd_down_longer_than_poll_failure_timeout_still_delivers(cluster_profile, private):
    # Accounting worked when the backend asked; then slurmdbd goes away for longer than the
    # monitor would wait for a failing scheduler: polls fall back to squeue/scontrol instead.
    name, workdir = private(cluster_profile("slurm"), poll_failure_timeout=5.0, poll_interval_max=1.0)
    fn = cluster(profile=name)(slow)
    assert fn(1, 0) == 2
    assert fn.session().backend.accounting
    stop_daemon("slurmdbd")
    try:
        futures = fn.map(range(3), [12] * 3)
        assert [f.result(timeout=180) for f in futures] == [0, 2, 4]
        assert all(f.job.state is JobState.COMPLETED for f in futures)
    finally:
        bring_back("slurm")
    assert slurm_queue(fn, [f.job_id for f in futures]) == []
    assert left_on_disk(workdir) == []


@pytest.mark.alone
def test_sshd_stopped_mid_poll_then_back_delivers_every_result(cluster_profile, private):
    base = cluster_profile("ssh-local")
    name, workdir = private(base, workdir=f"{profile_table(base)['workdir']}/faults-{os.getpid()}-{time.time_ns()}")
    fn = cluster(profile=name, poll_interval_max=1.0)(slow)
    futures = fn.map(range(2), [6] * 2)  # the host has two cores
    wait_for(lambda: all(f.state is JobState.RUNNING for f in futures), 60, "the jobs to run")
    stop_daemon("ssh-local")
    try:
        # The open connection lives on in its own sshd child: end it, as a network cut would.
        fn.session().transport.close()
        time.sleep(4)
    finally:
        subprocess.run([str(CLUSTERS / "restart-sshd-local")], check=True, capture_output=True, timeout=60)
    assert [f.result(timeout=120) for f in futures] == [0, 2]
    assert fn.session().transport.run(["ls", "-A", workdir]).stdout.split() == []
    fn.session().transport.remove_trees([workdir])


# -- the client ----------------------------------------------------------------------------------

CLIENT = """
import os, sys
import cloudpickle
from clustrix import cluster
import tests.real_world.test_faults_real as faults
cloudpickle.register_pickle_by_value(faults)
fn = cluster(profile=sys.argv[1])(faults.slow)
futures = fn.map(range(int(sys.argv[2])), [float(sys.argv[3])] * int(sys.argv[2]))
print(" ".join(f.job_id for f in futures), flush=True)
if sys.argv[4] == "die":
    os._exit(0)
[f.result() for f in futures]
"""


def client(profile: str, calls: int, seconds: float, mode: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT, profile, str(calls), str(seconds), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        cwd=Path(__file__).resolve().parents[2],
    )


def test_a_killed_client_s_jobs_are_reattached_from_a_new_process(cluster_profile, private):
    name, workdir = private(cluster_profile("slurm"))
    proc = client(name, 3, 5, "die")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    job_ids = out.split()
    assert len(job_ids) == 3
    futures = [clustrix.attach(job_id) for job_id in job_ids]
    assert [f.result(timeout=180) for f in futures] == [0, 2, 4]
    # A worker whose last call returned is still ending (on a busy machine, for seconds).
    fn = cluster(profile=name)(slow)
    wait_for(lambda: slurm_queue(fn, job_ids) == [], 60, "the workers to leave the queue")
    # Every call's directory is cleaned, and the workers' batch directory with its record: this
    # client found the batch from the record and followed all of its calls.
    assert left_on_disk(workdir) == []


def test_ctrl_c_during_a_100_call_map_leaves_nothing_in_the_queue(cluster_profile, private):
    name, _ = private(cluster_profile("slurm"))
    proc = client(name, 100, 300, "wait")
    job_ids = proc.stdout.readline().split()
    assert len(job_ids) == 100
    fn = cluster(profile=name)(slow)
    wait_for(lambda: len(slurm_queue(fn, job_ids)) > 0, 60, "the map to be queued")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert "KeyboardInterrupt" in err
    wait_for(lambda: slurm_queue(fn, job_ids) == [], 90, "the whole map to leave the queue")


@pytest.mark.expensive
def test_a_1000_call_map_delivers_every_result(cluster_profile, private):
    name, workdir = private(cluster_profile("slurm-multi"))
    fn = cluster(profile=name)(slow)
    futures = fn.map(range(1000), [0] * 1000, chunksize=25)
    assert [f.result(timeout=900) for f in futures] == [2 * x for x in range(1000)]
    assert slurm_queue(fn, [f.job_id for f in futures]) == []
    wait_for(lambda: left_on_disk(workdir) == [], 30, "every job and batch directory to be cleaned")
