"""The qsub scripts and command lines the PBS backend renders for fixed specs, both dialects (see tests/golden.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustrix.config import ClusterConfig
from clustrix_pbs.backend import PbsBackend
from tests.golden import RecordingTransport, assert_golden, render

GOLDEN = Path(__file__).parent / "golden"


class SmallArrays(PbsBackend):
    """Arrays split at 3 here, to show the split; the dialect comes from pbs_dialect (no qstat is asked)."""

    def max_array_size(self) -> int:
        return 3


TORQUE = ("pbs_dialect", "torque")
PRO = ("pbs_dialect", "pro")
CASES = {
    "torque-single": dict(
        answer="4242", calls=1, options=[TORQUE], cores=4, memory="1.5G", time="01:30:00", queue="debug", account="lab"
    ),
    "torque-single-after": dict(answer="4242", calls=1, options=[TORQUE], after=("41", "40[2]"), gpus=1),
    "torque-array": dict(
        answer="4242",
        calls=4,
        options=[TORQUE, ("pbs_path", "/opt/torque/bin"), ("pbs_env", (("PBS_SERVER", "batch1"),))],
        extra=["-l feature=avx2"],
    ),
    "pro-single": dict(answer="4242.pbs01", calls=1, options=[PRO], cores=2, gpus=4, memory="3GB"),
    "pro-single-after": dict(answer="4242.pbs01", calls=1, options=[PRO], after=("41.pbs01", "40[2].pbs01")),
    "pro-array-chunked": dict(answer="4242[].pbs01", calls=5, chunksize=2, options=[PRO], time=5, queue="workq"),
    # A map runs as workers; one that waits for a call (run by workers, no PBS id) is held.
    "torque-workers": dict(answer="4242", calls=5, chunksize=None, options=[TORQUE], time="00:10:00", after=("7#1",)),
    "pro-workers": dict(answer="4242[].pbs01", calls=2, chunksize=None, options=[PRO], after=("41.pbs01",)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_script_matches_golden(case):
    assert_golden(render(SmallArrays, **CASES[case]), GOLDEN / f"{case}.txt")


@pytest.mark.parametrize(
    ("dialect", "tasks", "command"),
    [
        # OpenPBS requeues a subjob deleted while it starts: what is left of the arrays is purged.
        (PRO, ["4242[3].pbs01", "4242[4].pbs01", "4250[0].pbs01"], "qdel -W force '4242[].pbs01' '4250[].pbs01'"),
        # Slurm's wrapper ends an array task only with its whole array.
        (TORQUE, ["4242[3]", "4242[4]"], "qdel 4242"),
    ],
)
def test_workers_left_at_the_end_of_a_batch_go_with_their_arrays(dialect, tasks, command):
    config = ClusterConfig(profile="t", backend="pbs", transport="t", workdir="/w", options=(dialect,))
    transport = RecordingTransport(config, "")
    PbsBackend(config, transport).retire_workers(tasks)
    assert transport.commands == [command]
