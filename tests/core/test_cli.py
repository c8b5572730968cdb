"""The ``clustrix`` command against real jobs submitted from this process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clustrix import JobCancelledError, JobState, cluster


def clustrix(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("clustrix")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, env=os.environ)


def test_backends_and_profiles(local_profile):
    local_profile("alpha")
    out = clustrix("backends")
    assert out.returncode == 0
    assert "backend    local" in out.stdout and "backend    example" in out.stdout
    out = clustrix("profiles")
    assert "alpha" in out.stdout and "clustrix.toml" in out.stdout


def test_jobs_cancel_and_logs(local_profile, tmp_path):
    profile = local_profile()
    marker = tmp_path / "started"

    @cluster(profile=profile)
    def long_job(path):
        print("hello from the job", flush=True)
        Path(path).write_text("yes")
        time.sleep(300)

    future = long_job.submit(str(marker))
    while not marker.exists():
        time.sleep(0.05)
    listing = clustrix("jobs")
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if line.startswith(future.job_id))
    assert "RUNNING" in line and "long_job" in line

    logs = clustrix("logs", future.job_id)
    assert logs.stdout == "hello from the job\n"

    assert clustrix("cancel", future.job_id).returncode == 0
    with pytest.raises(JobCancelledError):
        future.result(timeout=60)
    assert future.state is JobState.CANCELLED
    everything = clustrix("jobs", "--all").stdout
    assert any(line.startswith(future.job_id) and "CANCELLED" in line for line in everything.splitlines())


def test_unknown_job_is_a_clear_error(local_profile):
    local_profile()
    out = clustrix("logs", "nosuchjob")
    assert out.returncode == 2
    assert "not in the journal" in out.stderr


def test_check_probes_the_profile(local_profile):
    out = clustrix("check", local_profile())
    assert out.returncode == 0 and out.stdout.startswith("ok")
    assert f"{os.cpu_count()} cores" in out.stdout
