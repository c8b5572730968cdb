"""The sbatch scripts and command lines the Slurm backend renders for fixed specs (see tests/golden.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustrix_slurm.backend import SlurmBackend
from tests.golden import assert_golden, render

GOLDEN = Path(__file__).parent / "golden"


class NoConfigQuery(SlurmBackend):
    """MaxArraySize is asked of scontrol on a real cluster; here it is fixed so arrays split at 3."""

    def max_array_size(self) -> int:
        return 3


CASES = {
    "single": dict(calls=1, cores=4, memory="1.5G", time="01:30:00", queue="debug", account="lab"),
    "single-after": dict(calls=1, after=("41", "40_2"), gpus=1, tasks_per_node=2, nodes=2),
    "array": dict(
        calls=4, options=[("slurm_conf", "/etc/slurm/other.conf"), ("array_throttle", 2)], extra=["--qos=low"]
    ),
    "array-chunked": dict(calls=5, chunksize=2, time=5),
    "workers": dict(calls=5, chunksize=None, time="00:10:00", after=("41",)),
    # A map of calls on several tasks: a job for each call, never workers or chunks.
    "tasks-map": dict(calls=2, chunksize=None, nodes=2, cores=2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_script_matches_golden(case):
    assert_golden(render(NoConfigQuery, "4242", **CASES[case]), GOLDEN / f"{case}.txt")
