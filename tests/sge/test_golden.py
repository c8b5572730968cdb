"""The qsub scripts and command lines the SGE backend renders for fixed specs (see tests/golden.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustrix_sge.backend import SgeBackend
from tests.golden import assert_golden, render

GOLDEN = Path(__file__).parent / "golden"


class NoConfigQuery(SgeBackend):
    """max_aj_tasks is asked of qconf on a real cluster; here it is fixed so arrays split at 3."""

    def max_array_size(self) -> int:
        return 3


CASES = {
    "single": dict(calls=1, cores=4, memory="1.5G", time="01:30:00", queue="all.q", account="lab"),
    "single-after": dict(calls=1, after=("41", "40.2", "40.3"), memory="300MB"),
    "array": dict(
        calls=4,
        cores=2,
        memory="1G",
        options=[
            ("parallel_environment", "mpi"),
            ("array_throttle", 2),
            ("sge_root", "/opt/sge"),
            ("sge_cell", "lab"),
            ("sge_qmaster_port", 6444),
        ],
        extra=["-l scratch=10G", "#$ -m n"],
    ),
    "array-chunked": dict(calls=5, chunksize=2, time=5),
    "workers": dict(calls=5, chunksize=None, time="00:10:00", after=("41",)),
    # Not a per-slot limit: qconf -sc is asked whether it is a per-slot consumable (here: no answer).
    "mem-free": dict(calls=1, cores=2, memory="2G", options=[("memory_resource", "mem_free")]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_script_matches_golden(case):
    assert_golden(render(NoConfigQuery, "4242", **CASES[case]), GOLDEN / f"{case}.txt")


def test_what_sge_cannot_express_is_refused_before_qsub():
    from clustrix import ConfigError

    for resources, word in ((dict(gpus=1), "gpus"), (dict(nodes=2), "nodes"), (dict(tasks_per_node=2), "nodes")):
        with pytest.raises(ConfigError, match=word):
            render(NoConfigQuery, "4242", calls=1, **resources)
