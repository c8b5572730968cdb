"""Workers that claim calls on the ``local`` backend (cases in tests/worker_cases.py)."""

from __future__ import annotations

from tests import worker_cases


def test_a_map_is_drained_by_as_many_workers_as_the_cores_hold(local_profile):
    worker_cases.a_map_is_drained_by_as_many_workers_as_the_cores_hold(local_profile())


def test_a_call_over_its_time_limit_fails_alone(local_profile):
    worker_cases.a_call_over_its_time_limit_fails_alone(local_profile())


def test_a_call_out_of_memory_fails_alone(local_profile):
    worker_cases.a_call_out_of_memory_fails_alone(local_profile())


def test_killed_workers_lose_no_result_and_new_ones_finish_the_map(local_profile):
    worker_cases.killed_workers_lose_no_result_and_new_ones_finish_the_map(local_profile())
