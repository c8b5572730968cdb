"""The journal: a line per submitted and finished job in the user's state directory.

It is how ``clustrix jobs``, ``cancel`` and ``logs`` find jobs submitted by other
processes. It is an ordinary plugin of the core, built on the event hooks.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
from pathlib import Path
from typing import Any

import platformdirs

from clustrix.hookspecs import hookimpl
from clustrix.job import Job

_lock = threading.Lock()


def journal_path() -> Path:
    return Path(os.environ.get("CLUSTRIX_JOURNAL") or Path(platformdirs.user_state_dir("clustrix")) / "jobs.jsonl")


def _append(record: dict[str, Any]) -> None:
    path = journal_path()
    line = json.dumps(record, sort_keys=True) + "\n"
    with _lock:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(line)


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
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "submitted":
            jobs[record["key"]] = {**record, "state": None}
        elif record.get("key") in jobs:
            jobs[record["key"]]["state"] = record["state"]
    return list(jobs.values())
