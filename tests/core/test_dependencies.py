"""Dependencies on the local backend: futures as arguments, ``after()``, failure propagation, cleanup."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clustrix import ConfigError, DependencyFailedError, JobState, cluster
from clustrix.state import JobStatus


def slow_value(x, seconds=1.0):
    import time

    time.sleep(seconds)
    return x


def stamp(value, path=None):
    import time
    from pathlib import Path

    if path:
        Path(path).write_text(str(time.time()))
    return value


def fail_later(seconds=0.5):
    import time

    time.sleep(seconds)
    raise ValueError("upstream broke")


def test_future_as_argument_passes_its_value(local_profile):
    profile = local_profile()
    upstream = cluster(profile=profile)(slow_value).submit({"weights": [1, 2, 3]})
    downstream = cluster(profile=profile)(stamp).submit(upstream)
    assert downstream.result(timeout=120) == {"weights": [1, 2, 3]}
    assert downstream.job.waits_for == (upstream.job,)


def test_keyword_future_and_finished_future(local_profile):
    profile = local_profile()
    first = cluster(profile=profile)(slow_value).submit(5, seconds=0.1)
    assert first.result(timeout=60) == 5
    # Already ended: its value is passed directly, no waiting and no result file needed.
    again = cluster(profile=profile)(stamp).submit(value=first)
    assert again.result(timeout=60) == 5
    assert again.job.waits_for == ()


def test_after_starts_only_once_the_upstream_completed(local_profile, tmp_path):
    profile = local_profile()
    upstream = cluster(profile=profile)(slow_value).submit("done", seconds=1.5)
    marker = tmp_path / "started"
    downstream = cluster(profile=profile)(stamp).after(upstream).submit("next", str(marker))
    assert downstream.result(timeout=120) == "next"
    upstream_end = upstream.job.meta["end"]
    import datetime

    started = datetime.datetime.fromtimestamp(float(marker.read_text()), datetime.UTC)
    assert started >= datetime.datetime.fromisoformat(upstream_end)


def test_failed_upstream_cancels_dependants_with_a_clear_error(local_profile, tmp_path):
    profile = local_profile()
    upstream = cluster(profile=profile)(fail_later).submit()
    marker = tmp_path / "ran"
    by_argument = cluster(profile=profile)(stamp).submit(upstream, str(marker))
    by_after = cluster(profile=profile)(stamp).after(upstream).submit(1, str(marker))
    for dependant in (by_argument, by_after):
        with pytest.raises(DependencyFailedError, match=f"job {upstream.job_id} it depends on ended FAILED"):
            dependant.result(timeout=120)
        assert dependant.state is JobState.CANCELLED
    assert not marker.exists(), "a dependant of a failed job must never run"
    with pytest.raises(ValueError):
        upstream.result()


def test_depending_on_an_already_failed_job_is_refused_at_submission(local_profile):
    profile = local_profile()
    upstream = cluster(profile=profile)(fail_later).submit(0.0)
    with pytest.raises(ValueError):
        upstream.result(timeout=60)
    with pytest.raises(DependencyFailedError, match="not submitted"):
        cluster(profile=profile)(stamp).submit(upstream)


def test_upstream_directory_outlives_its_cleanup_until_dependants_ran(local_profile):
    profile = local_profile(cleanup="on_success")
    upstream = cluster(profile=profile)(slow_value).submit(7, seconds=0.2)
    # The dependant waits behind a long job on every core, so the upstream ends (and would be cleaned) first.
    import os

    blockers = cluster(profile=profile, cores=1)(slow_value).map(
        [0] * (os.cpu_count() or 1), [2.0] * (os.cpu_count() or 1)
    )
    downstream = cluster(profile=profile)(stamp).submit(upstream)
    assert upstream.result(timeout=60) == 7
    assert Path(upstream.job.directory).exists(), "kept for the dependant that reads it"
    assert downstream.result(timeout=120) == 7
    for blocker in blockers:
        blocker.result(timeout=120)
    deadline = time.monotonic() + 10
    while Path(upstream.job.directory).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(upstream.job.directory).exists(), "cleaned once no dependant needs it"


def test_after_needs_futures(local_profile):
    with pytest.raises(ConfigError, match="not a future"):
        cluster(profile=local_profile())(stamp).after(42)


def test_dependant_removed_before_its_failed_upstream_is_seen_ending(local_profile):
    """PBS Pro deletes an ``afterok`` dependant as its upstream exits, and a poll can report that
    before the upstream's own end: the dependant still fails with DependencyFailedError, not as a
    job cancelled for no reason. The scheduler's order is replayed here by hiding the upstream's
    end from the first polls that see the dependant gone."""
    profile = local_profile()
    upstream = cluster(profile=profile)(fail_later).submit()
    dependant = cluster(profile=profile)(stamp).after(upstream).submit(1)
    session = dependant.job.session
    real_poll = session.backend.poll
    after_dependant_ended = []

    def upstream_late(job_ids):
        statuses = real_poll(job_ids)
        seen = statuses.get(upstream.job_id)
        if seen is not None and seen.state.finished and len(after_dependant_ended) < 3:
            statuses[upstream.job_id] = JobStatus(JobState.RUNNING)
            ended = statuses.get(dependant.job_id)
            if after_dependant_ended or (ended is not None and ended.state.finished):
                after_dependant_ended.append(ended)
        return statuses

    session.backend.poll = upstream_late
    try:
        with pytest.raises(DependencyFailedError, match=f"job {upstream.job_id} it depends on ended FAILED"):
            dependant.result(timeout=120)
    finally:
        del session.backend.poll
    assert after_dependant_ended, "the dependant's end was reported before its upstream's"
    assert dependant.state is JobState.CANCELLED
