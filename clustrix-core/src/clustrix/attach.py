"""Re-attaching to jobs a previous client process submitted: ``clustrix.attach(job_id)``.

The client died (laptop closed, notebook restarted) but its jobs ran on. The journal
(``clustrix.journal``, 0600 in the user's state directory) kept what is needed to collect
them: the cluster as configured (secrets come from the profile again) and the key that
authenticates each result. ``attach`` gives back a future that resolves to the value or
the error, exactly as the original one would have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clustrix.errors import ConfigError

if TYPE_CHECKING:
    from clustrix.job import ClusterFuture
    from clustrix.session import ClusterSession


def journaled_session(record: dict) -> ClusterSession:
    """The session of the cluster a journaled job went to: its profile (none if it had none, whatever
    the default is now) with the settings it was submitted with."""
    from clustrix.profiles import resolve
    from clustrix.session import get_session

    config, _ = resolve(record["profile"], record.get("cluster") or {}, default=False)
    return get_session(config)


def attach(job_id: str) -> ClusterFuture:
    """A future for the job with this scheduler id (or, for a call in a chunk, this call's key)."""
    # Imported here: ``clustrix`` exports this function, and the journal, profiles and sessions
    # (plugins, asyncio, structlog) are not for ``import clustrix`` to load.
    from clustrix.journal import journal_path, read_jobs

    records = [r for r in read_jobs() if job_id in (r["job_id"], r["key"])]
    if not records:
        raise ConfigError(f"job {job_id} is not in the journal ({journal_path()})")
    if len(records) > 1:
        keys = ", ".join(r["key"] for r in records)
        raise ConfigError(f"job {job_id} ran {len(records)} calls; attach one of them by its key: {keys}")
    record = records[0]
    if "spec" not in record:
        raise ConfigError(f"job {job_id} was journaled by a clustrix too old to re-attach to")
    return journaled_session(record).attach(
        job_id=record["job_id"],
        key=record["key"],
        directory=record["directory"],
        hmac_key=bytes.fromhex(record["result_key"]),
        name=record["name"],
        record=record["spec"],
    )
