"""The ``clustrix`` command against real jobs submitted from this process, run as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clustrix import JobCancelledError, JobState, cluster
from tests.conftest import wait_for


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


def popen_clustrix(*args: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("clustrix")
    return subprocess.Popen(
        [str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ
    )


def test_logs_follow_prints_lines_as_they_come_until_the_job_ends(local_profile, tmp_path):
    # Kept after the end: this process collects the job too, and would otherwise clean its
    # directory, racing the follower's last read.
    @cluster(profile=local_profile(cleanup="never"))
    def ticker(n, go):
        import os
        import sys

        for i in range(n):
            print(f"line {i}", flush=True)
            print(f"err {i}", file=sys.stderr, flush=True)
            # The rest waits until the follower showed the first line (however slow it starts).
            while i == 0 and not os.path.exists(go):
                time.sleep(0.1)
        return n

    go = tmp_path / "go"
    future = ticker.submit(4, str(go))
    follow_err = popen_clustrix("logs", "-f", "--stderr", future.job_id)
    follow = popen_clustrix("logs", "-f", future.job_id)
    arrivals = []
    for line in follow.stdout:
        arrivals.append((line, future.done()))
        go.touch()
    assert follow.wait(timeout=60) == 0, follow.stderr.read()
    assert future.result(timeout=30) == 4
    assert [line for line, _ in arrivals] == [f"line {i}\n" for i in range(4)]
    # As they come: the first line was shown while the job could not have ended; the follower
    # went on to the last line and exited once the job ended.
    assert not arrivals[0][1]
    out, err = follow_err.communicate(timeout=30)
    assert follow_err.returncode == 0, err
    assert out == "".join(f"err {i}\n" for i in range(4))


def test_jobs_watch_refreshes_the_table_until_ctrl_c(local_profile, tmp_path):
    marker = tmp_path / "started"

    @cluster(profile=local_profile())
    def long_job(path):
        Path(path).write_text("yes")
        time.sleep(300)

    future = long_job.submit(str(marker))
    wait_for(marker.exists, 60, "the job to start")
    watch = popen_clustrix("jobs", "--watch", "0.5")
    tables = 0
    shown = []
    for line in watch.stdout:
        shown.append(line)
        tables += line.startswith("JOB ID")
        if tables == 3:
            break
    watch.send_signal(signal.SIGINT)
    rest, err = watch.communicate(timeout=30)
    future.cancel()
    assert watch.returncode == 0 and "Traceback" not in err, err
    assert tables == 3
    assert any(line.startswith(future.job_id) and "RUNNING" in line for line in shown)
    # Piped, not a terminal: no screen clearing between tables.
    assert "\x1b" not in "".join(shown) + rest


def test_watch_takes_seconds_above_zero(local_profile):
    local_profile()
    out = clustrix("jobs", "--watch", "0")
    assert out.returncode == 2 and "above zero" in out.stderr
