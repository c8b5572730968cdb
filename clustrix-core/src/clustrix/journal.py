"""The journal: a line per submitted and finished job in the user's state directory.

It is how ``clustrix jobs``, ``cancel`` and ``logs`` find jobs submitted by other
processes. It is an ordinary plugin of the core, built on the event hooks. Several
client processes may write at once: each line is written whole under an exclusive
``flock``. A line that is not a record (a crash mid-write, an edit by hand) is skipped
with a warning naming the file and line.
"""

from __future__ import annotations

import datetime
import fcntl
import functools
import json
import os
import threading
from pathlib import Path
from typing import Any

import platformdirs

from clustrix.hookspecs import hookimpl
from clustrix.job import Job
from clustrix.log import get_logger
from clustrix.spec import spec_record

_lock = threading.Lock()


def journal_path() -> Path:
    given = os.environ.get("CLUSTRIX_JOURNAL")
    return Path(given) if given else _default_path(os.environ.get("XDG_STATE_HOME"), os.environ.get("HOME"))


@functools.lru_cache(maxsize=4)
def _default_path(_state_home: str | None, _home: str | None) -> Path:
    """The user's state directory's journal, for the variables it depends on: asked for every line
    of a map of thousands, where platformdirs works it out anew each time."""
    return Path(platformdirs.user_state_dir("clustrix")) / "jobs.jsonl"


def _append(record: dict[str, Any]) -> None:
    path = journal_path()
    line = json.dumps(record, sort_keys=True) + "\n"
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    with _lock:
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, flags, 0o600)
        try:
            # It holds result keys: only the user may read it, whatever mode it was created with.
            os.fchmod(fd, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@hookimpl
def clustrix_job_submitted(job: Job) -> None:
    config = job.session.config
    _append(
        {
            "event": "submitted",
            "job_id": job.job_id,
            "key": job.key,
            "name": job.spec.name,
            "profile": config.profile,
            "backend": config.backend,
            "directory": job.directory,
            "time": _now(),
            # What `clustrix.attach` needs to collect the job from another process: the cluster
            # as configured (secrets stay in the profile) and the key that authenticates its result.
            "cluster": job.session.config.settings(),
            "result_key": job.hmac_key.hex(),
            # How it runs (resources, env, setup, ...): a checkpointed call is submitted again so.
            "spec": spec_record(job.spec),
        }
    )


@hookimpl
def clustrix_job_requeued(job: Job, previous_job_id: str) -> None:
    _append({"event": "requeued", "job_id": job.job_id, "key": job.key, "previous": previous_job_id, "time": _now()})


@hookimpl
def clustrix_job_retried(job: Job, previous_job_id: str, error: BaseException) -> None:
    _append(
        {
            "event": "retried",
            "job_id": job.job_id,
            "key": job.key,
            "previous": previous_job_id,
            "error": type(error).__name__,
            "time": _now(),
        }
    )


@hookimpl
def clustrix_job_finished(job: Job) -> None:
    _append({"event": "finished", "job_id": job.job_id, "key": job.key, "state": job.state.value, "time": _now()})


def read_jobs() -> list[dict[str, Any]]:
    """One record per job, newest last: its submission merged with its end, if seen."""
    jobs: dict[str, dict[str, Any]] = {}
    path = journal_path()
    if not path.exists():
        return []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "key" not in record:
            get_logger().warning("skipping a journal line that is not a record", file=str(path), line=number)
            continue
        if record.get("event") == "submitted":
            jobs[record["key"]] = {**record, "state": None}
        elif record.get("event") in ("requeued", "retried") and record["key"] in jobs:
            jobs[record["key"]]["job_id"] = record["job_id"]
        elif record["key"] in jobs:
            jobs[record["key"]]["state"] = record.get("state")
    return list(jobs.values())
