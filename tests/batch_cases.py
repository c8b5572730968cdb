"""What every batch scheduler owes, written once for Slurm, SGE and PBS (both dialects).

Each case takes a profile, submits real jobs and checks what the client saw; it returns what
the scheduler's own test then reads in that scheduler's words (``scontrol``, ``qacct``,
``qstat -f``). The per-scheduler modules keep their tests and call these.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import clustrix
from clustrix import JobFailedError, JobState, cluster
from clustrix.api import ClusterFunction
from clustrix.errors import JobOutOfMemoryError, JobTimeoutError
from clustrix.validation import ClusterJobValidator, ValidationResult
from tests.conftest import profile_table, use_variant, with_marker

# The job functions travel by value: the ssh cases run them as another user with another interpreter.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


# -- job functions -----------------------------------------------------------------------------------


def add(x: int, y: int) -> int:
    return x + y


def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def nap(x):
    time.sleep(2)
    return x


class PayloadError(ValueError):
    pass


def raise_payload_error(n: int) -> None:
    raise PayloadError(f"bad payload {n}")


def exit_hard(code: int) -> None:
    os._exit(code)


def eat_memory(megabytes: int, seconds: float) -> int:
    hog = b"x" * (megabytes * 1024**2)
    time.sleep(seconds)
    return len(hog)


def hold_memory(megabytes: int) -> int:
    block = bytearray(megabytes * 1024**2)
    time.sleep(3)  # long enough for the scheduler's accounting to sample it
    return len(block)


def timed_pid(seconds: float) -> tuple[int, float, float]:
    start = time.time()
    time.sleep(seconds)
    return os.getpid(), start, time.time()


def fan_out() -> list[tuple[int, float, float]]:
    return clustrix.pmap(timed_pid, [1.5, 1.5])


def broken(seconds: float = 2.0):
    time.sleep(seconds)
    raise ValueError("upstream broke")


def touch(value, path=None):
    if path:
        Path(path).write_text("ran")
    return value


def whoami(job_variable: str) -> tuple[str, str]:
    import getpass

    return getpass.getuser(), os.environ[job_variable]


def identity(x: int, variables: tuple[str, ...]) -> tuple[int, ...]:
    """``x * x`` and the scheduler's variables naming the task that ran it."""
    return (x * x, *(os.environ[name] for name in variables))


def batch_dirs(fn: ClusterFunction) -> set[str]:
    backend = fn.session().backend
    out = backend.transport.run(["sh", "-c", 'ls -d "$1"/batch-* 2>/dev/null || true', "sh", backend.workdir])
    return set(out.stdout.split())


# -- how jobs end --------------------------------------------------------------------------------------


def an_exception_comes_back_with_its_type_and_remote_traceback(profile: str) -> tuple[ClusterFunction, Any]:
    fn = cluster(profile=profile)(raise_payload_error)
    future = fn.submit(7)
    with pytest.raises(PayloadError, match="bad payload 7") as info:
        future.result(timeout=120)
    assert "raise_payload_error" in info.value.remote_traceback
    assert any("Remote traceback" in note for note in info.value.__notes__)
    return fn, future


def an_exit_code_reaches_job_failed_error(profile: str) -> tuple[ClusterFunction, Any]:
    fn = cluster(profile=profile)(exit_hard)
    future = fn.submit(3)
    with pytest.raises(JobFailedError, match="ended without a result") as info:
        future.result(timeout=120)
    assert (info.value.exit_code, info.value.state) == (3, JobState.FAILED)
    return fn, future


def a_call_over_its_memory_is_out_of_memory(
    profile: str, memory: str, megabytes: int, seconds: float = 30.0
) -> tuple[ClusterFunction, Any, JobOutOfMemoryError]:
    """The call allocates ``megabytes`` over its ``memory`` and holds it ``seconds`` (time for a
    scheduler that samples usage to see it)."""
    fn = cluster(profile=profile, memory=memory)(eat_memory)
    future = fn.submit(megabytes, seconds)
    with pytest.raises(JobOutOfMemoryError) as info:
        future.result(timeout=180)
    assert info.value.state is JobState.OUT_OF_MEMORY
    return fn, future, info.value


def a_call_over_its_time_limit_is_a_timeout(
    profile: str, limit: str, timeout: float
) -> tuple[ClusterFunction, Any, JobTimeoutError]:
    fn = cluster(profile=profile, time=limit)(sleep_for)
    future = fn.submit(300)
    with pytest.raises(JobTimeoutError) as info:
        future.result(timeout=timeout)
    assert info.value.state is JobState.TIMEOUT
    return fn, future, info.value


# -- what ran ---------------------------------------------------------------------------------------------


def pmap_runs_on_the_allocated_cores_at_once(profile: str) -> None:
    (pid_a, start_a, end_a), (pid_b, start_b, end_b) = cluster(profile=profile, cores=2, parallel=True)(fan_out)()
    assert pid_a != pid_b
    assert start_a < end_b and start_b < end_a, "the two iterations did not overlap"


def a_map_is_one_array_of_workers(
    profile: str, calls: int, variables: tuple[str, ...]
) -> tuple[ClusterFunction, list, list[tuple]]:
    """A map of ``calls`` is one array whose workers ran every call (each result carries the
    task's ``variables``), and its batch directory is gone once every call succeeded."""
    fn = cluster(profile=profile)(identity)
    before = batch_dirs(fn)
    futures = fn.map(range(calls), [variables] * calls)
    results = [f.result(timeout=300) for f in futures]
    assert [r[0] for r in results] == [x * x for x in range(calls)]
    (prefix,) = {f.job_id.split("#")[0] for f in futures}
    assert [f.job_id for f in futures] == [f"{prefix}#{i}" for i in range(calls)]
    assert batch_dirs(fn) == before, "the array's batch directory is cleaned once all its jobs succeeded"
    return fn, futures, results


def the_validator_sees_what_was_allocated(
    validator: ClusterJobValidator, profile: str, queue: str, megabytes: int = 50, **resources: Any
) -> ValidationResult:
    """A job of two cores, five minutes in ``queue`` (and ``resources``) that holds ``megabytes``,
    validated: the scheduler listed it, its states moved forward to COMPLETED, and it granted
    what was asked."""
    job = cluster(profile=profile, cores=2, time="00:05:00", queue=queue, **resources)
    result = validator.validate(job(hold_memory).submit(megabytes), expected_value=megabytes * 1024**2)
    assert result.passed, result.summary()
    checks = {c.name: c for c in result.checks}
    assert checks["submission"].passed
    assert checks["allocated cores"].actual == 2
    assert checks["allocated time limit"].actual == 300
    assert checks["queue"].actual == queue
    assert result.history[0][0] == "PENDING" and result.history[-1][0] == "COMPLETED"
    assert result.metrics.exit_code == 0
    return result


# -- dependencies and polling ------------------------------------------------------------------------


def a_failed_upstream_cancels_its_dependant(profile: str, tmp_path: Path) -> tuple[Any, Any]:
    """The dependant never runs (its marker file is never written) and ends CANCELLED with
    DependencyFailedError naming the upstream."""
    upstream = cluster(profile=profile)(broken).submit()
    marker = tmp_path / "ran"
    downstream = cluster(profile=profile)(touch).submit(upstream, str(marker))
    with pytest.raises(clustrix.DependencyFailedError, match=f"job {upstream.job_id} it depends on ended FAILED"):
        downstream.result(timeout=300)
    assert downstream.state is JobState.CANCELLED
    assert not marker.exists()
    return upstream, downstream


def scheduler_commands_per_poll(
    profile: str, counted: Callable[[list[str]], str | None], submit: Callable[[ClusterFunction], list]
) -> list[dict[str, int]]:
    """Run the jobs ``submit`` makes of a two-second nap under a fast poll; for every poll, how
    many commands it ran of each kind ``counted`` names (None: not counted)."""
    fn = cluster(profile=profile, poll_interval=0.5, poll_interval_max=1.0)(nap)
    session = fn.session()
    per_poll: list[dict[str, int]] = []
    current: dict[str, int] = {}
    real_run, real_poll = session.transport.run, session.backend.poll

    def counting_run(argv, **kwargs):
        if (kind := counted(argv)) is not None:
            current[kind] = current.get(kind, 0) + 1
        return real_run(argv, **kwargs)

    def counting_poll(job_ids):
        current.clear()
        statuses = real_poll(job_ids)
        per_poll.append(dict(current))
        return statuses

    session.transport.run = counting_run
    session.backend.poll = counting_poll
    try:
        futures = submit(fn)
        assert [f.result(timeout=300) for f in futures] == [f.job.spec.args[0] for f in futures]
    finally:
        del session.transport.run
        del session.backend.poll
    assert len(per_poll) >= 3
    return per_poll


# -- hostile input ----------------------------------------------------------------------------------------


def a_hostile_value_is_refused_before_anything_reaches_the_scheduler(
    profile: str, tmp_path: Path, key: str, value: Any
) -> None:
    """A newline in a directive's value would write a shell line into the script (and drop every
    directive after it): each such value is a ConfigError naming its key, and nothing runs."""
    marker = tmp_path / "pwned"
    # Refused at decoration, or (setup, python) when the script is rendered.
    with pytest.raises(clustrix.ConfigError, match=key if key != "env" else "environment variable name"):
        cluster(profile=profile, workdir=str(tmp_path / "jobs"), **{key: with_marker(value, marker)})(add)(1, 2)
    assert not marker.exists()
    assert not (tmp_path / "jobs").exists() or list((tmp_path / "jobs").iterdir()) == []


@contextlib.contextmanager
def a_hostile_job(
    profile: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    report: Callable[[], tuple],
    *,
    value_tail: str,
    workdir_tail: str,
    name: str,
) -> Iterator[tuple[ClusterFunction, Any, list, str]]:
    """A job with shell in its environment value, its job directory's path and its ``name``
    (``{marker}`` and ``{second}`` there: files to touch), each followed by the scheduler's own
    hostile words (``value_tail``, ``workdir_tail``): ``report`` returns the job's ``X`` byte for
    byte and its ``argv`` (its job directories), then what the scheduler's test checks, which
    is yielded with the function, the future and the name as given. Then a map of the same kind runs, no marker file
    may exist (nothing ran as shell), and the workdir is removed."""
    tag = uuid.uuid4().hex
    markers = [f"/tmp/cx-pwned-{tag}-{i}" for i in range(5)]
    value = f"$(touch {markers[0]}); `touch {markers[1]}`; ' \" \\n \n{value_tail}"
    workdir = f"{profile_table(profile)['workdir']}/cx work 'q' \"dq\" $(touch {markers[2]}) `x` %j{workdir_tail}{tag}"
    use_variant(tmp_path, monkeypatch, profile, "hostile", workdir=workdir)
    name = name.replace("{marker}", markers[3]).replace("{second}", markers[4])
    fn = cluster(profile="hostile", name=name, env={"X": value})(report)
    try:
        future = fn.submit()
        got, argv, *rest = future.result(timeout=120)
        assert got == value
        assert argv[0].startswith(workdir + "/")
        yield fn, future, rest, name
        batch = cluster(profile="hostile", env={"X": value})(add).map([1, 2], [3, 4])
        assert [f.result(timeout=120) for f in batch] == [4, 6]
        assert not any(Path(m).exists() for m in markers), "a hostile value ran as shell"
    finally:
        fn.session().transport.remove_trees([workdir])


# -- from a login node -------------------------------------------------------------------------------------


def runs_over_ssh_as_the_hosts_user(
    profile: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workdir: str, job_variable: str
) -> tuple[ClusterFunction, Any]:
    """``profile``'s scheduler driven from ssh-local's host as its user (the commands and files
    over SSH): a call comes back, and a job ran as that user under the id the client knows."""
    ssh: Mapping[str, Any] = profile_table("ssh-local")
    connection = {key: ssh[key] for key in ("host", "port", "user", "identity_file", "known_hosts", "python")}
    use_variant(tmp_path, monkeypatch, profile, f"{profile}-ssh", **connection, workdir=workdir)
    assert cluster(profile=f"{profile}-ssh")(add)(10, 32) == 42
    fn = cluster(profile=f"{profile}-ssh")(whoami)
    future = fn.submit(job_variable)
    assert future.result(timeout=120) == ("cxuser", future.job_id)
    return fn, future
