"""Retries (``retries=``, ``retry_on=``) on the ``local`` backend: which failures run a call again, and what
that leaves in the job's history, the journal and the validator's record. (Workers killed under a map's
calls: tests/worker_cases.py, on local, ssh and Slurm.)"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
from pathlib import Path

import pytest

from clustrix import cluster
from clustrix.errors import ConfigError, JobTimeoutError, NodeFailureError
from clustrix.state import JobState
from clustrix.validation import ClusterJobValidator
from tests.conftest import wait_for


def run_count(path: str, fail_runs: int, error: type[BaseException] = ValueError) -> int:
    """Count this run in ``path``; raise ``error`` for the first ``fail_runs`` runs, then return the count."""
    runs = int(Path(path).read_text()) + 1 if os.path.exists(path) else 1
    Path(path).write_text(str(runs))
    if runs <= fail_runs:
        raise error(f"run {runs} fails")
    return runs


def waits_on_its_first_run(path: str) -> int:
    """Count this run in ``path``; the first run sleeps a minute (to be killed), the others return the count."""
    runs = run_count(path, 0)
    if runs == 1:
        time.sleep(60)
    return runs


def journal_events(tmp_path: Path, event: str) -> list[dict]:
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["event"] == event]


def test_the_call_s_own_exception_is_not_retried(local_profile, tmp_path):
    fn = cluster(profile=local_profile(), retries=2)(run_count)
    counter = str(tmp_path / "runs")
    with pytest.raises(ValueError, match="run 1 fails"):
        fn(counter, 5)
    assert Path(counter).read_text() == "1"
    assert not journal_events(tmp_path, "retried")


def test_retry_on_names_the_exceptions_that_run_the_call_again(local_profile, tmp_path):
    fn = cluster(profile=local_profile(), retries=2, retry_on=(ValueError,))(run_count)
    future = fn.submit(str(tmp_path / "runs"), 2)
    assert future.result(timeout=60) == 3
    assert future.job.retries == 2
    states = [state for state, _ in future.job.history]
    assert states.count(JobState.REQUEUED) == 2 and states[-1] is JobState.COMPLETED, states
    retried = journal_events(tmp_path, "retried")
    assert [(r["key"], r["error"]) for r in retried] == [(future.job.key, "ValueError")] * 2
    record = ClusterJobValidator().validate(future)
    assert record.retries == 2 and record.to_dict()["retries"] == 2


def test_retries_run_out(local_profile, tmp_path):
    fn = cluster(profile=local_profile(), retries=1, retry_on=ValueError)(run_count)
    counter = str(tmp_path / "runs")
    with pytest.raises(ValueError, match="run 2 fails"):
        fn(counter, 5)
    assert Path(counter).read_text() == "2"


def test_a_time_limit_is_retried_only_when_retry_on_names_it(local_profile, tmp_path):
    counter = str(tmp_path / "runs")
    name = local_profile()
    plain = cluster(profile=name, retries=2, time="00:00:02")(waits_on_its_first_run)
    with pytest.raises(JobTimeoutError):
        plain(counter)
    assert Path(counter).read_text() == "1"
    os.unlink(counter)
    retried = cluster(profile=name, retries=2, time="00:00:02", retry_on=JobTimeoutError)(waits_on_its_first_run)
    assert retried(counter) == 2


def test_a_job_whose_process_is_killed_runs_again(local_profile, tmp_path):
    counter = str(tmp_path / "runs")
    fn = cluster(profile=local_profile(), retries=1, poll_interval=0.2, poll_interval_max=0.5)(waits_on_its_first_run)
    future = fn.submit(counter)
    pid_file = Path(future.job.directory) / "pid"
    wait_for(lambda: pid_file.exists() and os.path.exists(counter), 60, "the job to start")
    # The whole job, as the host's OOM killer or an admin would end it: no exit status of its own.
    os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    assert future.result(timeout=60) == 2
    states = [state for state, _ in future.job.history]
    assert JobState.NODE_FAIL in states and JobState.REQUEUED in states, states
    (retried,) = journal_events(tmp_path, "retried")
    assert retried["error"] == NodeFailureError.__name__


def test_cancelled_while_waiting_for_its_retry(local_profile, tmp_path):
    counter = str(tmp_path / "runs")
    fn = cluster(profile=local_profile(), retries=3, retry_on=ValueError)(run_count)
    future = fn.submit(counter, 5)
    wait_for(lambda: future.job.state is JobState.REQUEUED, 60, "the first retry to be scheduled")
    assert future.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=5)
    time.sleep(1 + 2)  # past the first retry's backoff: it does not run
    assert Path(counter).read_text() == "1"


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"retries": -1}, "retries=-1: expected a whole number of at least 0"),
        ({"retries": "2"}, "retries='2'"),
        ({"retry_on": "ValueError"}, "retry_on='ValueError': expected an exception class"),
        ({"retry_on": (ValueError, 3)}, "retry_on="),
    ],
)
def test_bad_retry_settings_are_config_errors(local_profile, settings, words):
    fn = cluster(profile=local_profile(), **settings)(abs)
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace("[", r"\[")):
        fn(-1)
