"""Waiting on many real local jobs: clustrix.as_completed, clustrix.wait, and clustrix.progress's bar."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import clustrix
from clustrix import ConfigError, cluster
from tests.conftest import process_gone, wait_for


def nap(seconds: float, value: object) -> object:
    time.sleep(seconds)
    return value


def fail_on(value: int) -> int:
    time.sleep(1.5)
    if value == 2:
        raise ValueError("two")
    return value


@pytest.fixture
def no_setting(monkeypatch):
    monkeypatch.delenv("CLUSTRIX_PROGRESS", raising=False)


def test_as_completed_yields_the_fast_call_before_the_slow_one(local_profile):
    fn = cluster(profile=local_profile(), cores=1)(nap)
    slow = fn.submit(4, "slow")
    fast = fn.submit(0, "fast")
    assert list(clustrix.as_completed([slow, fast], timeout=120)) == [fast, slow]
    assert slow.result() == "slow"


def test_wait_first_completed_and_a_cancelled_future_counts_as_done(local_profile):
    fn = cluster(profile=local_profile(), cores=1)(nap)
    slow = fn.submit(300, "never")
    fast = fn.submit(0, "fast")
    done, not_done = clustrix.wait([slow, fast], timeout=120, return_when=clustrix.FIRST_COMPLETED)
    assert done == {fast} and not_done == {slow}
    assert slow.cancel()
    done, not_done = clustrix.wait([slow, fast], timeout=5)
    assert done == {slow, fast} and not not_done
    assert list(clustrix.as_completed([slow], timeout=5)) == [slow]
    assert clustrix.ALL_COMPLETED == "ALL_COMPLETED" and clustrix.FIRST_EXCEPTION == "FIRST_EXCEPTION"


def test_progress_bar_counts_done_failed_running_and_pending(local_profile, no_setting):
    futures = cluster(profile=local_profile(), cores=1)(fail_on).map(range(4))
    out = io.StringIO()
    seen = list(clustrix.progress(futures, enabled=True, file=out))
    assert sorted(seen, key=futures.index) == futures
    # tqdm rewrites its line with \r; the last one is the bar as it was left.
    lines = [line.strip() for line in re.split(r"[\r\n]", out.getvalue()) if line.strip()]
    assert "4/4" in lines[-1] and "3 done, 1 failed, 0 running, 0 pending" in lines[-1], lines[-1]
    # Drawn while the calls ran (each takes 1.5 s), not only at the end.
    assert any(re.search(r"[1-9] running", line) for line in lines), lines


def test_progress_counts_a_cancelled_job_apart(local_profile, no_setting):
    fn = cluster(profile=local_profile(), cores=1)(nap)
    futures = [fn.submit(0, "ok"), fn.submit(300, "never")]
    futures[1].cancel()
    out = io.StringIO()
    assert set(clustrix.progress(futures, enabled=True, file=out)) == set(futures)
    assert "1 done, 0 failed, 0 running, 0 pending, 1 cancelled" in out.getvalue().rsplit("\r", 1)[-1]


def test_progress_draws_nothing_when_nobody_watches(local_profile, no_setting, capsys):
    futures = cluster(profile=local_profile(), cores=1)(nap).map([0, 0], ["a", "b"])
    # stderr here is pytest's capture, no terminal; and no notebook.
    assert set(clustrix.progress(futures)) == set(futures)
    assert [f.result() for f in futures] == ["a", "b"]
    assert capsys.readouterr().err == ""


def _terminal_output(futures, monkeypatch, setting: str | None) -> bytes:
    """What clustrix.progress(futures) (enabled=None) writes to a real terminal (a pty)."""
    if setting is not None:
        monkeypatch.setenv("CLUSTRIX_PROGRESS", setting)
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as terminal:
        list(clustrix.progress(futures, file=terminal))
    written = b""
    while select.select([leader], [], [], 0.2)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other side is closed and nothing is left
            break
        if not chunk:
            break
        written += chunk
    os.close(leader)
    return written


def test_progress_draws_on_a_terminal_unless_the_setting_says_no(local_profile, no_setting, monkeypatch):
    fn = cluster(profile=local_profile(), cores=1)(nap)
    assert b"1 done, 0 failed" in _terminal_output([fn.submit(0, 1)], monkeypatch, None)
    assert _terminal_output([fn.submit(0, 2)], monkeypatch, "0") == b""


def test_progress_without_tqdm(local_profile, no_setting, monkeypatch):
    # As if tqdm were not installed: importing it fails.
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    fn = cluster(profile=local_profile(), cores=1)(nap)
    future = fn.submit(0, "value")
    with pytest.raises(ConfigError, match=r"needs tqdm.*clustrix-core\[progress\]"):
        clustrix.progress([future], enabled=True)
    monkeypatch.setenv("CLUSTRIX_PROGRESS", "1")
    with pytest.raises(ConfigError, match="needs tqdm"):
        clustrix.progress([future])
    # Not asked for: no bar, and no error, even on a terminal.
    monkeypatch.delenv("CLUSTRIX_PROGRESS")
    assert _terminal_output([future], monkeypatch, None) == b""
    assert future.result() == "value"


def test_a_setting_that_is_not_on_or_off_is_a_config_error(monkeypatch):
    monkeypatch.setenv("CLUSTRIX_PROGRESS", "maybe")
    with pytest.raises(ConfigError, match="CLUSTRIX_PROGRESS='maybe'"):
        clustrix.progress([])


@pytest.mark.parametrize(
    "loop",
    ["clustrix.as_completed(futures)", "clustrix.progress(futures, enabled=True)"],
    ids=["as_completed", "progress"],
)
def test_ctrl_c_while_waiting_cancels_the_map(local_profile, tmp_path, loop):
    pid_files = [tmp_path / "pid0", tmp_path / "pid1"]
    script = tmp_path / "wait.py"
    script.write_text(
        "import os, time\n"
        "from pathlib import Path\n"
        "import clustrix\n"
        f"@clustrix.cluster(profile={local_profile()!r}, cores=1)\n"
        "def forever(path):\n"
        "    Path(path).write_text(str(os.getpid()))\n"
        "    time.sleep(300)\n"
        f"futures = forever.map({[str(p) for p in pid_files]!r})\n"
        f"for future in {loop}:\n"
        "    pass\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], env=os.environ, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: all(p.exists() and p.read_text() for p in pid_files), 60, "both calls to start")
    pids = [int(p.read_text()) for p in pid_files]
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" in stderr
    wait_for(lambda: all(process_gone(pid) for pid in pids), 30, "Ctrl-C to cancel every call of the map")


def test_import_clustrix_loads_neither_tqdm_nor_structlog():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, clustrix; print(sorted({'tqdm', 'structlog'} & set(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert out.stdout.strip() == "[]", out.stderr
