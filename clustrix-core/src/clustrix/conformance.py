"""The conformance kit: the contract every backend keeps, as real jobs.

    pytest --pyargs clustrix.conformance --clustrix-backend NAME
    pytest --pyargs clustrix.conformance --clustrix-profile NAME --clustrix-config FILE

Each test submits real jobs through the named backend and validates them with
ClusterJobValidator, so a backend passes only if it also answers the validator's
questions (``Backend.job_in_queue``, ``Backend.job_allocation``). Cancellation and scheduler
limits differ too much between schedulers to test generically: each backend's own
real-world tests cover them.
"""

from __future__ import annotations

import os
import sys

import cloudpickle
import pytest

from clustrix import ClusterFunction, cluster

pytestmark = pytest.mark.real_world

# The job functions below travel by value: the far side needs neither pytest nor this module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class ConformanceError(Exception):
    def __init__(self, payload: dict) -> None:
        super().__init__("conformance failure")
        self.payload = payload


def _add(x: int, y: int) -> int:
    return x + y


def _raise(payload: dict) -> None:
    raise ConformanceError(payload)


def _environment() -> dict:
    return {k: os.environ.get(k) for k in ("CLUSTRIX_JOB_ID", "CLUSTRIX_CORES", "CONFORMANCE", "FROM_SETUP")}


def _talk(word: str) -> str:
    print(f"said {word}")
    return word


def _job(profile: str, fn, **settings) -> ClusterFunction:
    return cluster(profile=profile, **settings)(fn)


def test_value_round_trip(conformance_profile, cluster_validator):
    result = cluster_validator.validate(_job(conformance_profile, _add).submit(10, 32), expected_value=42)
    assert result.passed, result.summary()


def test_exception_type_and_remote_traceback(conformance_profile, cluster_validator):
    future = _job(conformance_profile, _raise).submit({"n": 1})
    result = cluster_validator.validate(future, expected_error=ConformanceError)
    assert result.passed, result.summary()
    error = future.exception()
    assert error.payload == {"n": 1}
    assert "in _raise" in error.remote_traceback


def test_job_environment(conformance_profile, cluster_validator):
    job = _job(conformance_profile, _environment, cores=1, env={"CONFORMANCE": "a b'c"}, setup=["export FROM_SETUP=1"])
    future = job.submit()
    result = cluster_validator.validate(future)
    assert result.passed, result.summary()
    env = future.result()
    assert env == {"CLUSTRIX_JOB_ID": future.job_id, "CLUSTRIX_CORES": "1", "CONFORMANCE": "a b'c", "FROM_SETUP": "1"}


def test_map_keeps_order(conformance_profile, cluster_validator):
    futures = _job(conformance_profile, _add).map(range(10), range(10))
    results = [cluster_validator.validate(f, expected_value=2 * i) for i, f in enumerate(futures)]
    assert all(r.passed for r in results), "\n".join(r.summary() for r in results if not r.passed)


def test_output_is_captured(conformance_profile):
    future = _job(conformance_profile, _talk).submit("hello")
    assert future.result(timeout=600) == "hello"
    assert "said hello" in future.stdout()
