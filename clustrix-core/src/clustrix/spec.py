"""What one call asks for: the function, its arguments and where and how it runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from clustrix.resources import Resources, format_time

# The longest default notice a checkpointable call gets before its time limit, in seconds.
MAX_NOTICE = 90
# What a call on several tasks returns: rank 0's value, or every rank's in a list in rank order.
GATHER_MODES = ("rank0", "all")


def _frozen_env(env: Mapping[str, str] | tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(dict(env).items()))


@attrs.frozen
class JobSpec:
    """One call with everything its job needs. The backend renders its script from this."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    resources: Resources
    name: str
    env: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_frozen_env)
    setup: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    python: str | None = None
    parallel: bool = False
    gather: str = attrs.field(default="rank0", validator=attrs.validators.in_(GATHER_MODES))
    # Futures this call waits for besides those among its arguments (ClusterFunction.after).
    after: tuple[Any, ...] = ()
    # For a checkpointable call: how often its job may be submitted again, and how many seconds
    # before the time limit it checkpoints (None: a tenth of the limit, at most MAX_NOTICE).
    max_requeues: int = 3
    checkpoint_notice: int | None = None
    # How often a call that failed is run again, and the exception types (besides failures outside
    # the call, clustrix.retries) that count as such a failure.
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = ()

    @property
    def checkpointable(self) -> bool:
        """The function is an object with a ``checkpoint`` method: it can be stopped and resumed."""
        return callable(getattr(self.fn, "checkpoint", None))

    def checkpoint_at(self) -> int | None:
        """Seconds after the job's start at which the call checkpoints; None without a time limit."""
        limit = self.resources.time
        if not limit:
            return None
        return limit - (self.checkpoint_notice or max(1, min(MAX_NOTICE, limit // 10)))


def spec_record(spec: JobSpec) -> dict[str, Any]:
    """How ``spec``'s job runs, as JSON: what submitting it again needs, less the call itself
    (a requeued call resumes from the checkpoint in its job directory) and ``after``."""
    return {
        # Time as HH:MM:SS: a bare number means minutes to Resources.
        "resources": {
            **attrs.asdict(spec.resources),
            "time": format_time(spec.resources.time) if spec.resources.time else None,
            "extra": list(spec.resources.extra),
        },
        "env": dict(spec.env),
        "setup": list(spec.setup),
        "python": spec.python,
        "parallel": spec.parallel,
        "gather": spec.gather,
        "checkpointable": spec.checkpointable,
        "max_requeues": spec.max_requeues,
        "checkpoint_notice": spec.checkpoint_notice,
        "retries": spec.retries,
    }


def spec_from_record(record: Mapping[str, Any], name: str, fn: Callable[..., Any]) -> JobSpec:
    """The spec ``spec_record`` wrote, with ``fn`` standing for the function (and no arguments)."""
    return JobSpec(
        fn=fn,
        args=(),
        kwargs={},
        resources=Resources(**record["resources"]),
        name=name,
        env=record["env"],
        setup=record["setup"],
        python=record["python"],
        parallel=record["parallel"],
        gather=record["gather"],
        max_requeues=record["max_requeues"],
        checkpoint_notice=record["checkpoint_notice"],
        retries=record["retries"],
    )
