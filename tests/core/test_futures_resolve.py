"""Futures always resolve: whatever goes wrong while collecting one job fails that job's future with a
clear error, and the monitor keeps watching the others. Each failure is injected into a real run on
the local backend, where the core's own code would otherwise raise it."""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from pathlib import Path

import pytest

import clustrix
from clustrix import JobState, cluster


def nap(seconds: float, value: object) -> object:
    import time

    time.sleep(seconds)
    return value


class SFTPLikeError(Exception):
    """paramiko's SFTPError is no OSError: a transport may raise anything."""


@pytest.mark.parametrize(
    "failure",
    [PermissionError("permission denied: result.pkl"), SFTPLikeError("Garbage packet received"), ValueError("odd")],
    ids=["PermissionError", "non-OSError", "ValueError"],
)
def test_a_failure_reading_one_result_fails_that_job_and_the_others_resolve(local_profile, failure):
    fn = cluster(profile=local_profile())(nap)
    victim, other = fn.submit(0.2, "victim"), fn.submit(1.5, "other")
    session = victim.job.session
    real_read = session.transport.read_file

    def failing_read(path, **kwargs):
        if path.startswith(victim.job.directory):
            raise failure
        return real_read(path, **kwargs)

    session.transport.read_file = failing_read
    try:
        with pytest.raises(clustrix.JobLostError, match=type(failure).__name__) as caught:
            victim.result(timeout=60)
        assert caught.value.__cause__ is failure
        assert victim.job.directory in str(caught.value), "the error says where the job's files are"
        assert other.result(timeout=60) == "other"
        assert fn(0.0, "after") == "after", "the monitor still watches new jobs"
    finally:
        del session.transport.read_file


def test_a_poll_that_raises_something_unexpected_is_retried(local_profile):
    fn = cluster(profile=local_profile())(nap)
    session = fn.session()
    real_poll = session.backend.poll
    raised = []

    def poll_once_broken(job_ids):
        if not raised:
            raised.append(True)
            raise KeyError("unexpected status word")
        return real_poll(job_ids)

    session.backend.poll = poll_once_broken
    try:
        assert fn(0.1, 7) == 7
    finally:
        del session.backend.poll
    assert raised, "the broken poll really happened"


def test_a_poll_failing_with_a_foreign_error_gives_up_after_poll_failure_timeout(local_profile):
    fn = cluster(profile=local_profile(poll_failure_timeout=1.0, poll_interval_max=0.2))(nap)
    session = fn.session()
    session.backend.poll = lambda job_ids: (_ for _ in ()).throw(RuntimeError("backend bug"))
    try:
        future = fn.submit(0.1, 1)
        with pytest.raises(clustrix.BackendUnavailableError, match="RuntimeError: backend bug"):
            future.result(timeout=60)
    finally:
        del session.backend.poll


def test_a_cancel_racing_the_result_leaves_the_future_cancelled_and_the_monitor_alive(local_profile):
    fn = cluster(profile=local_profile())(nap)
    future, other = fn.submit(0.1, "late"), fn.submit(2.0, "other")
    real_set_result = future.set_result

    def cancelled_first(value):
        # The user's cancel() lands between the job's end and the result being set.
        concurrent.futures.Future.cancel(future)
        real_set_result(value)

    future.set_result = cancelled_first
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=60)
    assert other.result(timeout=60) == "other", "the job already in flight is still watched"


def exits(code):
    sys.exit(code)


def interrupted():
    raise KeyboardInterrupt


def test_sys_exit_in_a_job_is_a_job_failure_not_the_callers_exit(local_profile):
    fn = cluster(profile=local_profile())(exits)
    with pytest.raises(clustrix.JobExitError, match=r"sys.exit\(3\)") as caught:
        fn(3)
    assert caught.value.exit_code == 3 and isinstance(caught.value, clustrix.JobFailedError)
    assert "SystemExit" in caught.value.remote_traceback
    with pytest.raises(clustrix.JobExitError) as caught:
        fn(None)
    assert caught.value.exit_code == 0


def test_a_remote_keyboard_interrupt_is_not_raised_as_the_callers_own(local_profile):
    with pytest.raises(clustrix.RemoteError, match="KeyboardInterrupt"):
        cluster(profile=local_profile())(interrupted)()


def test_preempted_without_requeue_is_an_end():
    assert JobState.PREEMPTED.finished


def blob(size: int) -> bytes:
    return b"x" * size


def test_a_result_over_max_result_bytes_is_refused_unread_and_left_in_place(local_profile):
    fn = cluster(profile=local_profile(max_result_bytes=1024**2))(blob)
    future = fn.submit(2 * 1024**2)
    with pytest.raises(clustrix.ResultTooLargeError, match="over max_result_bytes=1048576") as caught:
        future.result(timeout=60)
    assert isinstance(caught.value, clustrix.ResultError)
    assert (Path(future.job.directory) / "result.pkl").stat().st_size > 2 * 1024**2, "left for the user"
    assert fn(10) == b"x" * 10


def test_a_slow_result_does_not_hold_up_the_other_jobs(local_profile):
    fn = cluster(profile=local_profile())(nap)
    slow, quick = fn.submit(0.1, "slow"), fn.submit(1.0, "quick")
    session = slow.job.session
    real_read = session.transport.read_file
    release = threading.Event()

    def stuck_read(path, **kwargs):
        if path.startswith(slow.job.directory):
            release.wait(120)  # a huge result on a slow file system
        return real_read(path, **kwargs)

    session.transport.read_file = stuck_read
    try:
        assert quick.result(timeout=60) == "quick", "polls and collection go on while one read is stuck"
        assert not slow.done()
        release.set()
        assert slow.result(timeout=60) == "slow"
    finally:
        release.set()
        del session.transport.read_file


def test_a_cancelled_future_counts_as_done_for_wait_and_as_completed(local_profile):
    fn = cluster(profile=local_profile())(nap)
    future = fn.submit(300, "never")
    assert future.cancel()
    done, _ = concurrent.futures.wait([future], timeout=5)
    assert done == {future}
    assert list(concurrent.futures.as_completed([future], timeout=5)) == [future]
