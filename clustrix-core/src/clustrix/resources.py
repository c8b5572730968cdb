"""What a job asks of the scheduler, parsed once and strictly.

Memory is held in bytes and time in whole seconds; each backend renders them in
its scheduler's own units. Malformed or negative values raise ``ConfigError``
naming the parameter and the value.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from clustrix import convert
from clustrix.errors import ConfigError

_MEMORY_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
}
# ASCII digits only: `\d` also takes other scripts' digits and `isdigit` superscripts, which
# int() then refuses or reads as something the scheduler would not.
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$", re.ASCII)
_TIME_RE = re.compile(r"^(?:(\d+)-)?(\d+):(\d{1,2}):(\d{1,2})$", re.ASCII)
_MINUTES_RE = re.compile(r"\s*\d+\s*", re.ASCII)
# More than any scheduler grants, far below what a float overflows at.
_MAX_MEMORY = 1024**6


def parse_memory(value: int | str, name: str = "memory") -> int:
    """Bytes from ``512MB``, ``1GB``, ``1.5G``, ``2GiB`` or an integer count of bytes.

    Every unit is binary (``1GB`` == ``1G`` == ``1GiB`` == 1024**3 bytes), as Slurm, PBS and SGE
    read them, so what a user writes is what the scheduler grants.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{name}={value!r}: expected a size such as '512MB', '2GiB' or a number of bytes")
    if isinstance(value, int):
        number, unit = value, ""
    else:
        match = _MEMORY_RE.match(value)
        if not match or match.group(2).lower() not in _MEMORY_UNITS:
            raise ConfigError(f"{name}={value!r}: expected a size such as '512MB', '1.5G', '2GiB' or bytes")
        number, unit = float(match.group(1)), match.group(2).lower()
    size = number * _MEMORY_UNITS[unit]
    if not size <= _MAX_MEMORY:
        raise ConfigError(f"{name}={value!r}: more than any cluster has (at most 1 EiB)")
    result = math.ceil(size)
    if result <= 0:
        raise ConfigError(f"{name}={value!r}: must be more than zero")
    return result


def parse_time(value: int | str | datetime.timedelta, name: str = "time") -> int:
    """Seconds from ``HH:MM:SS``, ``D-HH:MM:SS``, a number of minutes or a ``timedelta``."""
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ConfigError(f"{name}={value!r}: expected 'HH:MM:SS', 'D-HH:MM:SS', minutes or a timedelta")
    elif isinstance(value, int):
        seconds = value * 60
    elif isinstance(value, str) and _MINUTES_RE.fullmatch(value):
        seconds = int(value.strip()) * 60
    elif isinstance(value, str) and (match := _TIME_RE.match(value.strip())):
        days, hours, minutes, secs = (int(g) if g else 0 for g in match.groups())
        if minutes >= 60 or secs >= 60:
            raise ConfigError(f"{name}={value!r}: minutes and seconds must be below 60")
        seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    else:
        raise ConfigError(f"{name}={value!r}: expected 'HH:MM:SS', 'D-HH:MM:SS', minutes or a timedelta")
    if seconds <= 0:
        raise ConfigError(f"{name}={value!r}: must be more than zero")
    return math.ceil(seconds)


def format_time(seconds: int) -> str:
    """``D-HH:MM:SS`` (days only when needed), the form every scheduler here accepts."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def _checked(converter: convert.Converter) -> Any:
    """An attrs validator from a converter; None is always allowed (the scheduler's default)."""

    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if value is not None:
            converter(value)

    return check


def _directives(value: Any) -> tuple[str, ...]:
    """Extra scheduler directives, passed through as given: each must be one line."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"extra={value!r}: expected a list of directives, e.g. ['--constraint=avx2']")
    for line in value:
        if not isinstance(line, str) or not line.strip() or any(c in line for c in "\n\r\0"):
            raise ConfigError(f"extra: {line!r}: each directive must be one non-empty line")
    return tuple(value)


# Names that reach a scheduler's directives and command lines: nothing a shell or a script parser splits.
_queue = convert.word(
    "queue",
    r"[A-Za-z0-9_.@-]+(?:,[A-Za-z0-9_.@-]+)*",
    "a queue or partition name (letters, digits, _ . @ -; several joined by commas)",
)
_account = convert.word("account", r"[A-Za-z0-9_.@-]+", "an account or project name (letters, digits, _ . @ -)")


@attrs.frozen
class Resources:
    """What one job asks for. ``None`` leaves the choice to the scheduler's defaults."""

    cores: int = attrs.field(default=1, validator=_checked(convert.whole_number("cores")))
    memory: int | None = attrs.field(default=None, converter=attrs.converters.optional(parse_memory))
    time: int | None = attrs.field(default=None, converter=attrs.converters.optional(parse_time))
    gpus: int = attrs.field(default=0, validator=_checked(convert.whole_number("gpus", minimum=0)))
    nodes: int = attrs.field(default=1, validator=_checked(convert.whole_number("nodes")))
    tasks_per_node: int | None = attrs.field(default=None, validator=_checked(convert.whole_number("tasks_per_node")))
    queue: str | None = attrs.field(default=None, validator=_checked(_queue))
    account: str | None = attrs.field(default=None, validator=_checked(_account))
    extra: tuple[str, ...] = attrs.field(default=(), converter=_directives)

    @property
    def tasks(self) -> int:
        """How many times a call runs: once per task, ``tasks_per_node`` (default one) on each node."""
        return self.nodes * (self.tasks_per_node or 1)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Resources:
        """Build from profile/decorator keys; ``partition`` is the Slurm word for ``queue``."""
        values = {k: v for k, v in settings.items() if k in RESOURCE_KEYS}
        if "partition" in values:
            partition = values.pop("partition")
            if values.get("queue") not in (None, partition):
                raise ConfigError(f"queue={values['queue']!r} and partition={partition!r} disagree: give one")
            values["queue"] = partition
        return cls(**values)


RESOURCE_KEYS = frozenset(
    {"cores", "memory", "time", "gpus", "nodes", "tasks_per_node", "queue", "partition", "account", "extra"}
)
