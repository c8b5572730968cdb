"""One monitor per cluster: one status query per poll for all jobs; Ctrl-C cancels what it waited on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from clustrix import cluster
from tests.conftest import process_gone


def test_one_status_query_per_poll_however_many_jobs(local_profile):
    @cluster(profile=local_profile(), cores=1)
    def nap(i):
        import time

        time.sleep(1.0)
        return i

    session = nap.session()
    status_queries = []
    real_run = session.transport.run

    def counting_run(argv, **kwargs):
        if list(argv[:2]) == ["sh", "-c"] and "alive=0" in argv[2]:
            status_queries.append(len(argv) - 3)  # job directories asked about
        return real_run(argv, **kwargs)

    session.transport.run = counting_run
    try:
        polls_before = session.monitor.polls
        futures = nap.map(range(8))
        assert [f.result(timeout=120) for f in futures] == list(range(8))
        polls = session.monitor.polls - polls_before
    finally:
        del session.transport.run
    assert len(status_queries) <= polls
    assert max(status_queries) >= 2, "running jobs are asked about together"


def test_polls_that_do_not_ask_the_scheduler_keep_the_interval_short(local_profile):
    # A backend whose status query would be slowed now (OpenPBS's qstat in the same second as the
    # last) answers from the jobs' files: the monitor backs off by the polls that ask, not by these.
    @cluster(profile=local_profile(poll_interval=0.02, poll_interval_max=5.0))
    def nap(seconds):
        import time

        time.sleep(seconds)
        return seconds

    def polls_during_a_nap() -> int:
        before = session.monitor.polls
        assert nap(2.0) == 2.0
        return session.monitor.polls - before

    session = nap.session()
    backed_off = polls_during_a_nap()  # 0.02 s growing by half: about 10 polls in 2 s
    session.backend.query_would_wait = lambda: True
    try:
        kept_short = polls_during_a_nap()
    finally:
        del session.backend.query_would_wait
    assert backed_off <= 14, backed_off
    assert kept_short >= 2 * backed_off, (kept_short, backed_off)


def test_ctrl_c_while_waiting_cancels_the_job(local_profile, tmp_path):
    pid_file = tmp_path / "pid"
    script = tmp_path / "wait.py"
    script.write_text(
        "import os, time\n"
        "from pathlib import Path\n"
        "from clustrix import cluster\n"
        f"@cluster(profile={local_profile()!r})\n"
        "def forever(path):\n"
        "    Path(path).write_text(str(os.getpid()))\n"
        "    time.sleep(300)\n"
        f"forever({str(pid_file)!r})\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], env=os.environ, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    job_pid = int(Path(pid_file).read_text())
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" in stderr
    deadline = time.monotonic() + 30
    while not process_gone(job_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_gone(job_pid), "Ctrl-C must cancel the job it was waiting for"
