"""Sweeps on the real Slurm cluster: a cached map resumed after its client was killed, and a map
whose calls ask for different resources.

What was submitted is read from Slurm itself: accounting's record of every job of the test's
own job name, and what the calls themselves recorded there: the array each ran in, its cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import cloudpickle
import pytest

from clustrix import cluster
from clustrix.api import ClusterFunction
from clustrix.journal import read_jobs
from tests.conftest import process_gone, wait_for

pytestmark = [pytest.mark.real_world, pytest.mark.cluster_group("slurm")]

# Job functions travel by value, as in the other Slurm tests.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

CALLS = 12

# The client: a map of CALLS two-second calls, cached in argv[2]; it writes its futures' job ids
# to argv[4] as soon as the map is submitted, then prints every value. Each call that runs leaves
# a file X.ARRAY in argv[6]: which calls Slurm ran, and in which array.
SWEEP = """
import os
import sys
import time
from pathlib import Path

from clustrix import cluster


@cluster(profile=sys.argv[1], cache=sys.argv[2], name=sys.argv[3], poll_interval=0.2, poll_interval_max=0.5)
def slow_square(x, runs):
    time.sleep(2)
    Path(runs, f"{x}.{os.environ['SLURM_ARRAY_JOB_ID']}").touch()
    return x * x


calls = int(sys.argv[5])
futures = slow_square.map(range(calls), [sys.argv[6]] * calls)
Path(sys.argv[4]).write_text(" ".join(f.job_id for f in futures))
print(" ".join(str(f.result()) for f in futures))
"""


@pytest.fixture
def slurm(cluster_profile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    # The cache's key lives in the user's state directory: this test's own.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return cluster_profile("slurm")


def slurm_command(fn: ClusterFunction, *argv: str) -> str:
    backend = fn.session().backend
    result = backend.transport.run(list(argv), env={"SLURM_CONF": backend.config.option("slurm_conf")})
    assert result.ok, result.stderr
    return result.stdout


def arrays_named(fn: ClusterFunction, name: str) -> set[str]:
    """The id of every array (or job) accounting shows under ``name``."""
    out = slurm_command(fn, "sacct", "-n", "-P", "-X", "--name", name, "-S", "now-1days", "-o", "JobID")
    return {job_id.split("_")[0] for job_id in out.split()}


def stored(root: Path) -> list[Path]:
    return [path for path in root.glob("*/*") if not path.name.startswith(".")]


def test_a_cached_map_rerun_after_its_client_was_killed_submits_only_the_calls_not_stored(slurm, tmp_path):
    cache_dir = tmp_path / "cache"
    name = f"sweep-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP)
    first_ids, second_ids = tmp_path / "first-ids", tmp_path / "second-ids"
    runs = tmp_path / "runs"
    runs.mkdir()

    def client(ids: Path) -> subprocess.Popen:
        argv = [sys.executable, str(script), slurm, str(cache_dir), name, str(ids), str(CALLS), str(runs)]
        return subprocess.Popen(argv, env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = client(first_ids)
    first_array = wait_for(lambda: first_ids.exists() and first_ids.read_text().split("#")[0], 120, "the map")
    wait_for(lambda: len(stored(cache_dir)) >= 3, 300, "three results to be stored")
    first.kill()
    first.communicate(timeout=60)
    assert process_gone(first.pid)
    fn = cluster(profile=slurm)(len)
    # The first client's workers outlive it: they would only run calls nobody collects now.
    slurm_command(fn, "scancel", first_array)
    done = len(stored(cache_dir))
    assert 3 <= done < CALLS, f"{done} results stored when the client was killed"

    second = client(second_ids)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    assert out.split() == [str(x * x) for x in range(CALLS)]
    ids = second_ids.read_text().split()
    cached = {x for x, job_id in enumerate(ids) if job_id.startswith("cached-")}
    assert len(cached) == done
    (second_array,) = {job_id.split("#")[0] for job_id in ids if not job_id.startswith("cached-")}
    ran_again = {int(path.name.split(".")[0]) for path in runs.glob(f"*.{second_array}")}
    assert ran_again == set(range(CALLS)) - cached, "Slurm ran exactly the calls with no stored result"
    # Two submissions under the sweep's name, no more (accounting may record an array a moment late).
    wait_for(lambda: arrays_named(fn, name) == {first_array, second_array}, 60, "accounting of both arrays alone")
    assert len(read_jobs()) == CALLS + CALLS - done


def cpus_seen(x: int) -> tuple[int, str, str]:
    # Not os.sched_getaffinity: this cluster's cgroups do not confine a job's cores (it sees both).
    return x, os.environ["SLURM_CPUS_PER_TASK"], os.environ["SLURM_ARRAY_JOB_ID"]


def test_a_map_with_two_resource_groups_is_two_submissions_and_each_call_has_its_cores(slurm):
    name = f"groups-{uuid.uuid4().hex[:8]}"
    fn = cluster(profile=slurm, name=name, cores=1)(cpus_seen)
    futures = fn.map(range(6), resources=lambda x: {"cores": 1 + x % 2})
    results = [f.result(timeout=600) for f in futures]
    assert [r[:2] for r in results] == [(x, str(1 + x % 2)) for x in range(6)]
    by_cores = {cores: {r[2] for r in results[cores - 1 :: 2]} for cores in (1, 2)}
    assert all(len(arrays) == 1 for arrays in by_cores.values()) and by_cores[1] != by_cores[2]
    # One submission per resource group (accounting may record an array a moment late).
    wait_for(lambda: arrays_named(fn, name) == by_cores[1] | by_cores[2], 60, "accounting of the two arrays alone")
    for cores, (array_id,) in by_cores.items():
        # Workers that never started (every call was claimed first) were allocated nothing.
        allocated = slurm_command(fn, "sacct", "-n", "-P", "-X", "-j", array_id, "-o", "AllocCPUS").split()
        assert set(allocated) - {"0"} == {str(cores)}, f"array {array_id}: {allocated}"
