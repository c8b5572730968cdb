"""Hostile and malformed input at the trust boundaries (issue 18): each is refused with a clear
ClustrixError (a ConfigError naming the key, before anything is staged), and no future waits forever.

Cases so far: environment variable names that pass a `$`-anchored check (a trailing newline
would split the job script's `export`), a NUL in an environment value (dropped or cut short by
every environment), resource strings that used to escape as ValueError/OverflowError
(Unicode digits, sizes past what a float holds), results whose unpickling raises a
BaseException (the future must still resolve), and a umask of 002 (the workdir's parents
must not come out group-writable).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import clustrix
from clustrix import cluster
from clustrix.cli import main
from clustrix.errors import (
    ConfigError,
    JobFailedError,
    NodeFailureError,
    RemoteError,
    ResultCorruptError,
    SubmissionError,
)
from clustrix.journal import read_jobs
from tests.conftest import wait_for


def add(x: int, y: int) -> int:
    return x + y


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"env": {"FOO\n": "x"}}, "'FOO\\\\n' is not a valid environment variable name"),
        ({"env": {"FOO\ntouch /tmp/x": "x"}}, "is not a valid environment variable name"),
        ({"env": {"FOO": "a\0b"}}, "a value cannot hold a NUL character"),
        ({"time": "²"}, r"time='²': expected 'HH:MM:SS'"),
        ({"time": "١٢:00:00"}, "expected 'HH:MM:SS'"),
        ({"memory": "9" * 400}, "more than any cluster has"),
        ({"memory": 10**400}, "more than any cluster has"),
        ({"memory": "٣GB"}, "expected a size such as"),
    ],
)
def test_malformed_input_is_a_config_error_and_stages_nothing(local_profile, keys, message):
    name = local_profile()
    with pytest.raises(ConfigError, match=message):
        cluster(profile=name, **keys)(add)(1, 2)
    assert not local_profile.workdir.exists() or list(local_profile.workdir.iterdir()) == []


class ExitsWhenUnpickled:
    """Pickles fine where it is made; unpickling it calls sys.exit (a BaseException, not an Exception)."""

    def __reduce__(self):
        import sys

        return (sys.exit, (3,))


def returns_an_exit() -> ExitsWhenUnpickled:
    return ExitsWhenUnpickled()


def raises_an_exit() -> None:
    error = ValueError("carries an exit")
    error.payload = ExitsWhenUnpickled()
    raise error


def test_a_result_whose_unpickling_exits_resolves_its_future(local_profile):
    # Before: the SystemExit escaped the collector thread and the future never resolved.
    future = cluster(profile=local_profile())(returns_an_exit).submit()
    with pytest.raises(ResultCorruptError, match="the result could not be unpickled here: SystemExit: 3"):
        future.result(timeout=60)


def test_an_exception_whose_unpickling_exits_comes_back_as_a_remote_error(local_profile):
    future = cluster(profile=local_profile())(raises_an_exit).submit()
    with pytest.raises(RemoteError, match="carries an exit"):
        future.result(timeout=60)


def test_a_first_day_users_umask_002_does_not_lock_them_out_of_their_workdir(local_profile, tmp_path):
    # Before: the workdir's missing parents were made 0775 under umask 002, and from the second
    # session on the workdir check refused them as group-writable.
    workdir = tmp_path / "home" / ".clustrix" / "jobs"
    old = os.umask(0o002)
    try:
        for attempt in range(2):
            name = local_profile(f"run{attempt}", workdir=str(workdir))
            assert cluster(profile=name)(add)(attempt, 1) == attempt + 1
    finally:
        os.umask(old)
    for level in (tmp_path / "home", tmp_path / "home" / ".clustrix", workdir):
        assert stat.S_IMODE(level.stat().st_mode) == 0o700, level


def sleep_then(seconds: float) -> str:
    time.sleep(seconds)
    return os.environ["CLUSTRIX_JOB_ID"]


def test_a_refused_worker_relaunch_fails_that_maps_calls_only(local_profile):
    # Before: the refusal raised inside the poll, and after poll_failure_timeout every job of the
    # session failed with BackendUnavailableError, an unrelated one included.
    name = local_profile(poll_failure_timeout=5.0)
    fn = cluster(profile=name, cores=1, poll_interval=0.2, poll_interval_max=0.5)(sleep_then)
    backend = fn.session().backend
    futures = fn.map([1.0] * 6)
    unrelated = fn.submit(12.0)
    wait_for(lambda: sum(f.done() for f in futures) >= 1, 60, "a call to end")

    def refuse(*args, **kwargs):
        raise SubmissionError("qsub refused the job 'sleep_then'", scheduler_output="would exceed the user's job limit")

    backend.launch_workers = refuse
    # SIGKILL the map's workers: the calls left need new ones, which the scheduler refuses.
    backend.transport.run(
        [
            "sh",
            "-c",
            'for p in "$1"/batch-*/w0-*/pid; do kill -9 -"$(cat "$p")" 2>/dev/null; done',
            "sh",
            backend.workdir,
        ]
    )
    refused = 0
    for future in futures:
        try:
            future.result(timeout=60)
        except NodeFailureError:
            pass  # a call the killed workers were running
        except JobFailedError as exc:
            assert "its workers ended, and starting more failed" in str(exc) and "user's job limit" in str(exc)
            refused += 1
    assert refused >= 1
    assert unrelated.result(timeout=60) == unrelated.job_id, "the session's other jobs were polled on"


NO_PROFILE_CLIENT = """
import os, sys
from clustrix import cluster

@cluster(backend="local", workdir=sys.argv[1], name="no-profile")
def work(x):
    import time
    time.sleep(3)
    return x * 2

print(work.submit(21).job_id, work.submit(4).job_id, flush=True)
os._exit(0)
"""


def test_a_job_journaled_without_a_profile_is_found_where_it_went_after_a_default_appears(
    local_profile, tmp_path, capsys
):
    # Before: attach, `clustrix result` and `clustrix cancel` resolved such a job against whatever
    # default the config had later: here a Slurm profile, whose slurm_conf is no key of the local
    # backend the job went to (ConfigError); with keys in common, the job was looked for there.
    workdir = tmp_path / "decorated-jobs"
    out = subprocess.run(
        [sys.executable, "-c", NO_PROFILE_CLIENT, str(workdir)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.split()
    assert {r["profile"] for r in read_jobs()} == {None}
    config = Path(os.environ["CLUSTRIX_CONFIG"])
    config.write_text(f'default = "elsewhere"\n{config.read_text()}')
    local_profile("elsewhere", backend="slurm", slurm_conf="/nonexistent/slurm.conf")
    assert main(["result", first]) == 0
    assert capsys.readouterr().out.strip() == "42"
    assert clustrix.attach(second).result(timeout=60) == 8


MAP_CLIENT = """
import os, sys
from clustrix import cluster

@cluster(profile=sys.argv[1], cores=1)
def work(x):
    import time
    time.sleep(1)
    return x * 2

print(" ".join(f.job_id for f in work.map([1, 2, 3])), flush=True)
os._exit(0)
"""


def test_a_rewritten_batch_record_cannot_make_attach_remove_or_cancel_anything_else(local_profile, tmp_path):
    # Before: attach followed the dead client's batch.json as written, and removed its `directory`
    # once the calls ended: here an unrelated directory of the user's.
    name = local_profile()
    out = subprocess.run([sys.executable, "-c", MAP_CLIENT, name], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    calls = out.stdout.split()
    records = list(local_profile.workdir.glob("workers-*/batch.json"))
    assert len(records) == 1
    # A directory of the user's that lists like a finished batch (what any other batch directory does).
    precious = tmp_path / "precious"
    (precious / "ended").mkdir(parents=True)
    for index in range(3):
        (precious / "ended" / f"{index}.COMPLETED.0").touch()
    (precious / "thesis.tex").write_text("years of work")
    record = json.loads(records[0].read_text())
    records[0].write_text(json.dumps({**record, "directory": str(precious), "tasks": ["1", "2"]}))
    # Ignored, the record cannot say the calls still run: attach once they ended, their results decide.
    wait_for(lambda: len(list(local_profile.workdir.glob("*/result.pkl"))) == 3, 60, "the calls to end")
    assert [clustrix.attach(call).result(timeout=60) for call in calls] == [2, 4, 6]
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_files_are_written_through_no_planted_symlink(tmp_path):
    # Before: write_files (and the runner's own writes) opened `<path>.tmp` as it was, following a
    # symlink planted there into a file of the planter's choosing.
    from clustrix.config import ClusterConfig
    from clustrix.runner import _write_atomic
    from clustrix.transport import LocalTransport

    victim = tmp_path / "victim"
    victim.write_text("intact")
    transport = LocalTransport(ClusterConfig(None, "local", "local"))
    for name, write in [
        ("payload.pkl", lambda path: transport.write_files({str(path): b"call"})),
        ("result.pkl", lambda path: _write_atomic(str(path), b"result")),
    ]:
        target = tmp_path / name
        (tmp_path / f"{name}.tmp").symlink_to(victim)
        write(target)
        assert victim.read_text() == "intact"
        assert target.read_bytes() in (b"call", b"result") and not target.is_symlink()


def test_a_directory_found_where_a_new_one_is_made_is_refused(tmp_path):
    # Before: make_dirs accepted what was there, a planted directory or a symlink to one, and the
    # job's payload and key went into it.
    from clustrix.config import ClusterConfig
    from clustrix.errors import SubmissionError
    from clustrix.transport import LocalTransport

    transport = LocalTransport(ClusterConfig(None, "local", "local"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "work").mkdir(mode=0o700)
    (tmp_path / "work" / "planted").mkdir()
    (tmp_path / "work" / "linked").symlink_to(elsewhere)
    for name in ("planted", "linked"):
        with pytest.raises(SubmissionError, match="exists already"):
            transport.make_dirs([str(tmp_path / "work" / name)])
    transport.make_dirs([str(tmp_path / "new" / "deeper" / "job"), str(tmp_path / "new" / "deeper" / "job" / "sub")])
    modes = [oct((tmp_path / p).stat().st_mode & 0o777) for p in ("new", "new/deeper", "new/deeper/job")]
    assert modes == ["0o700"] * 3 and (tmp_path / "new/deeper/job/sub").is_dir()
    assert list(elsewhere.iterdir()) == []


def test_logs_follow_reads_only_what_was_added(local_profile, capsys):
    # Before: every second it read the whole file again (quadratic in a long job's output).
    name = local_profile(cleanup="never")

    def ticker(n: int) -> int:
        for i in range(n):
            print(f"line {i}", flush=True)
            time.sleep(1.2)
        return n

    future = cluster(profile=name)(ticker).submit(4)
    session = future.job.session
    read = []
    real_read = session.transport.read_file

    def counting_read(path, *args, **kwargs):
        data = real_read(path, *args, **kwargs)
        if path.endswith("/stdout"):
            read.append(len(data))
        return data

    session.transport.read_file = counting_read
    try:
        assert main(["logs", "-f", future.job_id]) == 0
    finally:
        del session.transport.read_file
    out = capsys.readouterr().out
    assert out == "".join(f"line {i}\n" for i in range(4))
    assert sum(read) == len(out.encode()) and len([n for n in read if n]) >= 2, read
