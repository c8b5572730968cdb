"""Inside a job: which task this is, of how many, on which nodes, and where the ranks meet.

A call on several tasks (``nodes`` > 1 or ``tasks_per_node`` > 1) runs once per task; the
backend's launcher gives every task ``CLUSTRIX_RANK``, ``CLUSTRIX_LOCAL_RANK``,
``CLUSTRIX_WORLD_SIZE``, ``CLUSTRIX_NODES`` (the scheduler's node names, comma-separated) and
``CLUSTRIX_MAIN_ADDRESS`` (the address of the node rank 0 runs on). Every job has
``CLUSTRIX_JOB_ID``; the main port is derived from it, so every rank computes the same one
without talking to the others. A job of one task is the 1-rank world on its own host.
Outside a job there is no world to describe: ``task_environment()`` raises ``NotInJobError``.
"""

from __future__ import annotations

import os
import socket
import zlib
from collections.abc import Mapping

import attrs

from clustrix.errors import NotInJobError

# Main ports are MAIN_PORT_BASE .. MAIN_PORT_BASE + MAIN_PORT_SPAN - 1, below Linux's ephemeral
# range; numeric job ids map one to one within any MAIN_PORT_SPAN consecutive jobs, so jobs
# running at the same time on a node do not pick the same port.
MAIN_PORT_BASE = 20000
MAIN_PORT_SPAN = 10000


def main_port(job_id: str) -> int:
    """The port rank 0 of job ``job_id`` listens on, the same on every rank."""
    number = int(job_id) if job_id.isdigit() else zlib.crc32(job_id.encode())
    return MAIN_PORT_BASE + number % MAIN_PORT_SPAN


@attrs.frozen
class TaskEnvironment:
    """One task of a job: its rank among all tasks and on its node, the world, and rank 0's address."""

    job_id: str
    rank: int
    local_rank: int
    world_size: int
    nodes: tuple[str, ...]
    main_address: str
    main_port: int

    @classmethod
    def from_variables(cls, variables: Mapping[str, str]) -> TaskEnvironment:
        """The task that the ``CLUSTRIX_*`` variables in ``variables`` describe."""
        job_id = variables.get("CLUSTRIX_JOB_ID")
        if not job_id:
            raise NotInJobError(
                "not inside a clustrix job (no CLUSTRIX_JOB_ID): a task environment exists only in a "
                "call that runs as a job"
            )
        if "CLUSTRIX_WORLD_SIZE" not in variables:
            return cls(job_id, 0, 0, 1, (socket.gethostname(),), "127.0.0.1", main_port(job_id))
        return cls(
            job_id=job_id,
            rank=int(variables["CLUSTRIX_RANK"]),
            local_rank=int(variables["CLUSTRIX_LOCAL_RANK"]),
            world_size=int(variables["CLUSTRIX_WORLD_SIZE"]),
            nodes=tuple(variables["CLUSTRIX_NODES"].split(",")),
            main_address=variables["CLUSTRIX_MAIN_ADDRESS"],
            main_port=main_port(job_id),
        )


def task_environment() -> TaskEnvironment:
    """This task's environment; ``NotInJobError`` outside a clustrix job."""
    return TaskEnvironment.from_variables(os.environ)
