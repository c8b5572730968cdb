"""What one call asks for: the function, its arguments and where and how it runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from clustrix.resources import Resources

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
