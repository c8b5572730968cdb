"""What a scheduler reports about one job for the validator: its allocation and its metrics.

Plain data, so plugins and the validator share it without importing each other.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs


def iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


@attrs.frozen
class Allocation:
    """What the scheduler granted a job, in clustrix units (bytes, seconds)."""

    cores: int | None = None
    memory: int | None = None
    time_limit: int | None = None
    queue: str | None = None
    nodes: tuple[str, ...] = attrs.field(default=(), converter=tuple)


@attrs.frozen
class JobMetrics:
    """Times, exit and resources of one job, from the scheduler where it reports them, else the runner."""

    job_id: str
    backend: str
    state: str
    submitted_at: datetime.datetime | None = None
    started_at: datetime.datetime | None = None
    ended_at: datetime.datetime | None = None
    exit_code: int | None = None
    nodes: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    allocated_cores: int | None = None
    allocated_memory: int | None = None
    peak_memory: int | None = None
    source: str = "runner"

    @property
    def queue_wait(self) -> float | None:
        if self.submitted_at and self.started_at:
            return max(0.0, (self.started_at - self.submitted_at).total_seconds())
        return None

    @property
    def run_time(self) -> float | None:
        if self.started_at and self.ended_at:
            return (self.ended_at - self.started_at).total_seconds()
        return None

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, value_serializer=lambda _i, _a, v: iso(v) if isinstance(v, datetime.datetime) else v)
        data.update(queue_wait=self.queue_wait, run_time=self.run_time)
        return data
