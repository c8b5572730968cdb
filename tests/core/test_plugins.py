"""Plugins: a third party's backend found by entry point alone, event hooks, the serializer hook."""

from __future__ import annotations

import logging
import os

import pytest

from clustrix import JobState, cluster, hookimpl
from clustrix.log import get_logger
from clustrix.plugins import backends, plugin_manager


def test_third_party_backend_is_discovered_by_entry_point():
    # tests/example_plugin is installed as its own distribution; nothing in the core names it.
    cls = backends()["example"]
    assert cls.__module__ == "clustrix_example_backend"
    dist_names = {dist.project_name for _, dist in plugin_manager().list_plugin_distinfo()}
    assert "clustrix-example-backend" in dist_names


def test_third_party_backend_runs_a_real_job(local_profile):
    @cluster(profile=local_profile(backend="example"))
    def whoami():
        return os.environ["CLUSTRIX_JOB_ID"], os.getpid()

    future = whoami.submit()
    job_id, pid = future.result(timeout=60)
    assert job_id == future.job_id and job_id.startswith("example-")
    assert pid != os.getpid()


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    @hookimpl
    def clustrix_job_submitted(self, job):
        self.events.append(("submitted", job.job_id))

    @hookimpl
    def clustrix_job_state_changed(self, job, old, new):
        self.events.append(("changed", job.job_id, old, new))

    @hookimpl
    def clustrix_job_finished(self, job):
        self.events.append(("finished", job.job_id, job.state))


@pytest.fixture
def recorder():
    rec = Recorder()
    plugin_manager().register(rec)
    yield rec
    plugin_manager().unregister(rec)


def test_events_fire_in_order(local_profile, recorder):
    @cluster(profile=local_profile())
    def nap():
        import time

        time.sleep(0.5)
        return "ok"

    future = nap.submit()
    assert future.result() == "ok"
    mine = [e for e in recorder.events if e[1] == future.job_id]
    assert mine[0] == ("submitted", future.job_id)
    assert ("changed", future.job_id, JobState.PENDING, JobState.RUNNING) in mine
    assert mine[-2] == ("changed", future.job_id, JobState.RUNNING, JobState.COMPLETED)
    assert mine[-1] == ("finished", future.job_id, JobState.COMPLETED)


class Broken:
    @hookimpl
    def clustrix_job_finished(self, job):
        raise RuntimeError("observer bug")


def test_broken_observer_loses_no_job(local_profile):
    broken = Broken()
    plugin_manager().register(broken)
    try:
        assert cluster(profile=local_profile())(abs)(-3) == 3
    finally:
        plugin_manager().unregister(broken)


class PickleSerializer:
    @hookimpl(tryfirst=True)
    def clustrix_serializer(self):
        return "pickle"


def test_serializer_hook_is_used_on_both_sides(local_profile):
    plugin = PickleSerializer()
    plugin_manager().register(plugin)
    profile = local_profile()
    try:
        # Plain pickle can carry a builtin by reference, but not a lambda: proof the hook chose it.
        assert cluster(profile=profile)(abs)(-5) == 5
        from clustrix import SerializationError

        with pytest.raises(SerializationError, match="with pickle"):
            cluster(profile=profile)(lambda: 1)()
    finally:
        plugin_manager().unregister(plugin)


def test_secrets_are_redacted_in_logs(caplog):
    caplog.set_level(logging.INFO, logger="clustrix")
    get_logger(job_id="42").info(
        "connecting", password="hunter2", api_token="abc123", ssh={"passphrase": "s3cret"}, host="login"
    )
    text = caplog.text
    assert "hunter2" not in text and "abc123" not in text and "s3cret" not in text
    assert "job_id='42'" in text and "host='login'" in text and "***" in text


def test_dependency_on_an_ended_job_needs_no_waiting_and_clusters_cannot_mix(local_profile):
    profile = local_profile(backend="example")
    import time

    upstream = cluster(profile=profile)(time.sleep).submit(0)
    assert upstream.result(timeout=60) is None  # ended at submit: a dependant needs no waiting
    assert cluster(profile=profile)(abs).after(upstream).submit(-1).result(timeout=60) == 1

    slow = cluster(profile=local_profile("other"))(time.sleep).submit(2)
    from clustrix import ConfigError

    with pytest.raises(ConfigError, match="another cluster"):
        cluster(profile=profile)(abs).after(slow).submit(-1)
