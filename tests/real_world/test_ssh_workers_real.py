"""Workers that claim calls on the ``ssh`` backend, on both real sshd hosts (cases in tests/worker_cases.py).

``ssh-local`` is this machine's sshd; ``ssh-remote`` a host in its own network namespace
with another user and interpreter, so the job functions travel by value.
"""

from __future__ import annotations

import pytest

from tests import worker_cases

pytestmark = [pytest.mark.real_world, pytest.mark.cluster_group("ssh")]

HOSTS = ["ssh-local", "ssh-remote"]


@pytest.mark.parametrize("host", HOSTS)
def test_a_map_is_drained_by_as_many_workers_as_the_cores_hold(cluster_profile, host):
    worker_cases.a_map_is_drained_by_as_many_workers_as_the_cores_hold(cluster_profile(host))


@pytest.mark.parametrize("host", HOSTS)
def test_a_worker_runs_its_calls_in_one_warm_process_until_one_crashes(cluster_profile, host):
    worker_cases.a_worker_runs_its_calls_in_one_warm_process_until_one_crashes(cluster_profile(host))


@pytest.mark.parametrize("host", HOSTS)
def test_a_call_over_its_time_limit_fails_alone(cluster_profile, host):
    worker_cases.a_call_over_its_time_limit_fails_alone(cluster_profile(host))


@pytest.mark.parametrize("host", HOSTS)
def test_a_call_out_of_memory_fails_alone(cluster_profile, host):
    worker_cases.a_call_out_of_memory_fails_alone(cluster_profile(host))


@pytest.mark.parametrize("host", HOSTS)
def test_killed_workers_lose_no_result_and_new_ones_finish_the_map(cluster_profile, host):
    worker_cases.killed_workers_lose_no_result_and_new_ones_finish_the_map(cluster_profile(host))


@pytest.mark.parametrize("host", HOSTS)
def test_calls_whose_workers_are_killed_run_again_with_retries(cluster_profile, host):
    worker_cases.calls_whose_workers_are_killed_run_again_with_retries(cluster_profile(host))
