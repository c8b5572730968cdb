"""ClusterJobValidator on real local jobs: every check can fail, and does when it should."""

from __future__ import annotations

import json
import time

from clustrix import JobState, JobTimeoutError, cluster
from clustrix.validation import ClusterJobValidator, categorize


def test_successful_job_passes_every_check(local_profile, tmp_path):
    validator = ClusterJobValidator(timeout=120)

    @cluster(profile=local_profile(), cores=2, memory="1GB", time="00:02:00")
    def add(x, y):
        return x + y

    result = validator.validate(add.submit(10, 32), expected_value=42)
    assert result.passed, result.summary()
    names = {check.name for check in result.checks}
    assert {"submission", "state transitions", "value", "allocated cores", "allocated memory"} <= names
    assert {"allocated time limit", "metrics"} <= names
    metrics = result.metrics
    assert metrics.exit_code == 0 and metrics.allocated_cores == 2
    assert metrics.allocated_memory == 1024**3 and metrics.peak_memory > 1024**2
    assert metrics.run_time >= 0 and metrics.queue_wait >= 0
    assert result.history[0][0] == "PENDING" and result.history[-1][0] == "COMPLETED"

    report = json.loads(validator.write_report(tmp_path / "report.json").read_text())
    assert report["passed"] is True
    assert report["jobs"][0]["metrics"]["allocated_cores"] == 2


def test_wrong_value_fails_the_value_check(local_profile):
    validator = ClusterJobValidator(timeout=120)
    result = validator.validate(cluster(profile=local_profile())(abs).submit(-2), expected_value=3)
    assert not result.passed
    assert [c.name for c in result.failures()] == ["value"]


def test_expected_error_is_categorised(local_profile):
    validator = ClusterJobValidator(timeout=120)

    @cluster(profile=local_profile(), time="00:00:02")
    def sleepy():
        time.sleep(60)

    result = validator.validate(sleepy.submit(), expected_error=JobTimeoutError, expected_state=JobState.TIMEOUT)
    assert result.passed, result.summary()
    assert result.error_category == "time_limit"


def test_unexpected_error_fails_and_is_a_user_exception(local_profile):
    validator = ClusterJobValidator(timeout=120)
    result = validator.validate(cluster(profile=local_profile())(int).submit("x"), expected_value=1)
    assert not result.passed
    assert result.error_category == "user_exception"


def test_files_the_job_wrote(local_profile, tmp_path):
    validator = ClusterJobValidator(timeout=120)
    out = tmp_path / "out.txt"

    @cluster(profile=local_profile())
    def write(path):
        with open(path, "w") as f:
            f.write("data")

    result = validator.validate(write.submit(str(out)), expected_files=[str(out), str(tmp_path / "never")])
    assert [c.name for c in result.failures()] == [f"file {tmp_path / 'never'}"]


def test_validator_timeout_cancels_the_job(local_profile):
    validator = ClusterJobValidator(timeout=1)

    @cluster(profile=local_profile())
    def forever():
        time.sleep(300)

    future = forever.submit()
    result = validator.validate(future)
    assert not result.passed
    assert "finished in time" in [c.name for c in result.failures()]
    assert future.cancelled()


def test_categories():
    assert categorize(None) is None
    assert categorize(ValueError()) == "user_exception"


def test_state_history_rules():
    import datetime
    import types

    t = [datetime.datetime(2026, 1, 1, 0, 0, i, tzinfo=datetime.UTC) for i in range(5)]
    P, R, C, X = JobState.PENDING, JobState.RUNNING, JobState.COMPLETED, JobState.PREEMPTED

    def check(states, times=t, end=C):
        job = types.SimpleNamespace(history=list(zip(states, times, strict=False)))
        return ClusterJobValidator()._history(job, end).passed

    assert check([P, R, C])
    assert check([P, C]), "a poll may miss a short RUNNING"
    assert check([P, R, X], end=X), "preempted and not requeued is an end"
    assert not check([P, R, X, R, C]), "nothing after a preemption that was not requeued"
    assert not check([P, R, P, C]), "back to PENDING without a preemption"
    assert not check([P, C, R]), "nothing after an end"
    assert not check([P, R, C], times=[t[0], t[2], t[1]]), "timestamps out of order"
    assert not check([P, R, JobState.FAILED]), "ended otherwise than expected"
