"""The local backend end to end: real child processes through serialize -> stage -> run -> fetch."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import stat
import time
from pathlib import Path

import pytest

import clustrix
from clustrix import (
    JobCancelledError,
    JobOutOfMemoryError,
    JobState,
    JobTimeoutError,
    RemoteError,
    SerializationError,
    SubmissionError,
    cluster,
)
from tests.conftest import process_gone


class CustomError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"custom failure {code}")
        self.code = code


def test_value_round_trip(local_profile):
    @cluster(profile=local_profile(), cores=1)
    def add(x, y):
        return x + y

    assert add(10, 32) == 42


def test_rich_values_and_closures_round_trip(local_profile):
    scale = 3

    @cluster(profile=local_profile())
    def build(n):
        return {"squares": [i * i * scale for i in range(n)], "pid": os.getpid(), "set": {1, 2}}

    result = build(4)
    assert result["squares"] == [0, 3, 12, 27]
    assert result["set"] == {1, 2}
    assert result["pid"] != os.getpid()


def test_original_exception_type_with_remote_traceback(local_profile):
    @cluster(profile=local_profile())
    def explode(code):
        def inner():
            raise CustomError(code)

        inner()

    with pytest.raises(CustomError) as info:
        explode(7)
    assert info.value.code == 7
    notes = "\n".join(info.value.__notes__)
    assert "Remote traceback" in notes
    assert "in inner" in notes and "custom failure 7" in notes
    assert "in inner" in info.value.remote_traceback


def test_builtin_exception_types_round_trip(local_profile):
    @cluster(profile=local_profile())
    def lookup(d, k):
        return d[k]

    with pytest.raises(KeyError, match="missing"):
        lookup({}, "missing")


def test_exception_class_unknown_here_is_remote_error(local_profile, tmp_path):
    # The exception's class lives in a module that exists only where the job runs.
    module_dir = tmp_path / "remote_only"
    module_dir.mkdir()
    (module_dir / "farside_errors.py").write_text("class FarSideError(Exception):\n    pass\n")

    @cluster(profile=local_profile(env={"PYTHONPATH": str(module_dir)}))
    def raise_far_side():
        import farside_errors

        raise farside_errors.FarSideError("only over there")

    with pytest.raises(RemoteError) as info:
        raise_far_side()
    assert info.value.type_name == "farside_errors.FarSideError"
    assert "only over there" in str(info.value)
    assert "in raise_far_side" in info.value.remote_traceback


def test_job_environment_variables(local_profile):
    @cluster(profile=local_profile(), cores=2, env={"GREETING": "hello 'world' $HOME"})
    def read_env():
        return {k: os.environ.get(k) for k in ("CLUSTRIX_JOB_ID", "CLUSTRIX_CORES", "GREETING")}

    future = read_env.submit()
    env = future.result()
    assert env["CLUSTRIX_JOB_ID"] == future.job_id
    assert env["CLUSTRIX_CORES"] == "2"
    assert env["GREETING"] == "hello 'world' $HOME"


def test_setup_lines_run_before_python(local_profile):
    @cluster(profile=local_profile(), setup=["export FROM_SETUP=$((6 * 7))"])
    def read():
        return os.environ["FROM_SETUP"]

    assert read() == "42"


def test_time_limit_kills_the_job_and_its_children(local_profile, tmp_path):
    pid_file = tmp_path / "pids"

    @cluster(profile=local_profile(), time="00:00:02")
    def sleepy(path):
        import subprocess

        child = subprocess.Popen(["sleep", "300"])
        Path(path).write_text(f"{os.getpid()} {child.pid}")
        time.sleep(60)

    with pytest.raises(JobTimeoutError) as info:
        sleepy(str(pid_file))
    assert info.value.state is JobState.TIMEOUT
    assert isinstance(info.value, TimeoutError)
    pids = [int(p) for p in pid_file.read_text().split()]
    deadline = time.monotonic() + 30
    while not all(process_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(process_gone(p) for p in pids), "the call's child must not outlive the time limit"


def test_cancel_of_a_time_limited_job_kills_its_children(local_profile, tmp_path):
    pid_file = tmp_path / "pids"

    @cluster(profile=local_profile(), time="00:10:00")
    def forever(path):
        import subprocess

        child = subprocess.Popen(["sleep", "300"])
        Path(path).write_text(f"{os.getpid()} {child.pid}")
        time.sleep(300)

    future = forever.submit(str(pid_file))
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(p) for p in pid_file.read_text().split()]
    assert future.cancel()
    deadline = time.monotonic() + 30
    while not all(process_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(process_gone(p) for p in pids)


def test_memory_limit(local_profile):
    @cluster(profile=local_profile(), memory="300MB")
    def hog():
        return len(bytearray(2 * 1024**3))

    with pytest.raises(JobOutOfMemoryError) as info:
        hog()
    assert info.value.state is JobState.OUT_OF_MEMORY
    assert isinstance(info.value, MemoryError)
    assert isinstance(info.value.__cause__, MemoryError)
    assert "MemoryError" in info.value.stderr_tail


def test_within_memory_limit_runs(local_profile):
    @cluster(profile=local_profile(), memory="1GB")
    def modest():
        return len(bytearray(50 * 1024**2))

    assert modest() == 50 * 1024**2


def test_cancel_kills_the_process_group(local_profile, tmp_path):
    pid_file = tmp_path / "pid"

    @cluster(profile=local_profile())
    def forever(path):
        import subprocess

        child = subprocess.Popen(["sleep", "300"])
        Path(path).write_text(f"{os.getpid()} {child.pid}")
        time.sleep(300)

    future = forever.submit(str(pid_file))
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(p) for p in pid_file.read_text().split()]
    assert future.cancel()
    assert future.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result()
    deadline = time.monotonic() + 30
    while not all(process_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(process_gone(p) for p in pids), "the job and its child must both be killed"
    deadline = time.monotonic() + 30
    while future.state is not JobState.CANCELLED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert future.state is JobState.CANCELLED


def test_job_cancelled_outside_the_client_raises_cancelled_error(local_profile, tmp_path):
    pid_file = tmp_path / "pid"

    @cluster(profile=local_profile())
    def forever(path):
        Path(path).write_text(str(os.getpid()))
        time.sleep(300)

    future = forever.submit(str(pid_file))
    while not pid_file.exists():
        time.sleep(0.05)
    # Someone else cancels it the way the backend would (the `clustrix cancel` command).
    future.job.session.backend.cancel([future.job_id])
    with pytest.raises(JobCancelledError):
        future.result(timeout=60)


def test_map_two_hundred_calls(local_profile):
    @cluster(profile=local_profile())
    def square(x):
        return x * x

    futures = square.map(range(200))
    assert [f.result(timeout=300) for f in futures] == [x * x for x in range(200)]
    assert len({f.job_id for f in futures}) == 200


def test_never_more_cores_in_use_than_the_machine_has(local_profile, tmp_path):
    cores = os.cpu_count() or 1

    @cluster(profile=local_profile(), cores=1)
    def interval(i):
        start = time.time()
        time.sleep(0.5)
        return start, time.time()

    spans = [f.result(timeout=120) for f in interval.map(range(cores * 3))]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak <= cores


def test_more_cores_than_the_machine_is_refused(local_profile):
    @cluster(profile=local_profile(), cores=(os.cpu_count() or 1) + 1)
    def nothing():
        return None

    with pytest.raises(SubmissionError, match="cores"):
        nothing()


def test_unpicklable_call_is_refused_before_anything_is_staged(local_profile):
    import threading

    profile = local_profile()

    @cluster(profile=profile)
    def takes(lock):
        return lock

    with pytest.raises(SerializationError, match="nothing was submitted"):
        takes(threading.Lock())
    assert not local_profile.workdir.exists() or not any(local_profile.workdir.iterdir())


def test_oversize_payload_is_refused(local_profile):
    @cluster(profile=local_profile(max_payload_bytes=10_000))
    def size(data):
        return len(data)

    with pytest.raises(SerializationError, match="max_payload_bytes"):
        size(b"x" * 100_000)


def test_unpicklable_return_value_is_an_environment_error(local_profile):
    @cluster(profile=local_profile())
    def returns_lock():
        import threading

        return threading.Lock()

    with pytest.raises(clustrix.JobEnvironmentError, match="pickle the return value"):
        returns_lock()


def test_futures_are_awaitable(local_profile):
    @cluster(profile=local_profile())
    def double(x):
        return 2 * x

    async def main():
        return await asyncio.gather(double.submit(1), double.submit(2))

    assert asyncio.run(main()) == [2, 4]


def test_stdout_and_stderr_are_kept_per_job(local_profile):
    @cluster(profile=local_profile())
    def talk(word):
        import sys

        print(f"out {word}")
        print(f"err {word}", file=sys.stderr)
        return word

    futures = talk.map(["a", "b"])
    assert [f.result() for f in futures] == ["a", "b"]
    assert futures[0].stdout() == "out a\n" and futures[1].stdout() == "out b\n"
    assert futures[0].stderr() == "err a\n"


def test_job_directory_is_private_and_cleaned_on_success(local_profile):
    seen = {}

    @cluster(profile=local_profile())
    def where():
        import sys

        d = sys.argv[1]
        return d, stat.S_IMODE(os.stat(d).st_mode), stat.S_IMODE(os.stat(os.path.join(d, "payload.pkl")).st_mode)

    directory, mode, payload_mode = where()
    seen["dir"] = directory
    assert mode == 0o700
    assert payload_mode == 0o600
    assert not Path(directory).exists()


def test_failed_job_directory_is_kept_with_meta(local_profile):
    @cluster(profile=local_profile())
    def fail():
        raise ValueError("keep me")

    future = fail.submit()
    with pytest.raises(ValueError):
        future.result()
    meta = json.loads((Path(future.job.directory) / "meta.json").read_text())
    assert meta["outcome"] == "raised"
    assert meta["pid"] != os.getpid()
    assert future.job.meta == meta
    assert [state for state, _ in future.job.history][-1] is JobState.FAILED


def test_function_defined_in_main_runs(local_profile, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import sys\n"
        "from clustrix import cluster\n"
        f"@cluster(profile={local_profile()!r})\n"
        "def triple(x):\n"
        "    return 3 * x\n"
        "if __name__ == '__main__':\n"
        "    print(triple(14))\n"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=os.environ)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42"


def test_cancel_a_whole_map_with_one_backend_call(local_profile):
    @cluster(profile=local_profile())
    def forever(i):
        time.sleep(300)

    futures = forever.map(range(6))
    done_early = cluster(profile=local_profile("other"))(abs).submit(-1)
    assert done_early.result(timeout=60) == 1
    backend = futures[0].job.session.backend
    calls = []
    real_cancel = backend.cancel
    backend.cancel = lambda ids: (calls.append(list(ids)), real_cancel(ids))[1]
    try:
        assert clustrix.cancel([*futures, done_early]) == 6
    finally:
        del backend.cancel
    assert len(calls) == 1 and sorted(calls[0]) == sorted(f.job_id for f in futures)
    assert all(f.cancelled() for f in futures) and not done_early.cancelled()
    deadline = time.monotonic() + 60
    while not all(f.state is JobState.CANCELLED for f in futures) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(f.state is JobState.CANCELLED for f in futures)
