"""Converters for profile and decorator values: each checks one value and raises ConfigError naming its key.

Every place that reads a setting (the core's keys, resources, each plugin's ``options``)
builds its converters from these, so the same mistake gets the same message everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from clustrix.errors import ConfigError

Converter = Callable[[Any], Any]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def string(name: str, what: str = "a non-empty string") -> Converter:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name}={value!r}: expected {what}")
        return value

    return convert


def word(name: str, pattern: str, what: str) -> Converter:
    """A value that reaches a scheduler's command line or directive: it must match ``pattern`` whole.

    ``what`` says what is allowed, for the error message.
    """
    compiled = re.compile(rf"(?:{pattern})")

    def convert(value: Any) -> str:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise ConfigError(f"{name}={value!r}: expected {what}")
        return value

    return convert


def whole_number(name: str, minimum: int = 1, maximum: int | None = None) -> Converter:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum else f"of at least {minimum}"
            raise ConfigError(f"{name}={value!r}: expected a whole number {bound}")
        return value

    return convert


def positive_number(name: str) -> Converter:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{name}={value!r}: expected a number above zero")
        return float(value)

    return convert


def boolean(name: str) -> Converter:
    def convert(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r}: expected true or false")
        return value

    return convert


def choice(name: str, choices: Iterable[str]) -> Converter:
    allowed = tuple(choices)

    def convert(value: Any) -> str:
        if value not in allowed:
            raise ConfigError(f"{name}={value!r}: expected one of {', '.join(map(repr, allowed))}")
        return value

    return convert


def env_name(name: str, context: str = "env") -> str:
    """An environment variable's name, safe to write unquoted after ``export``."""
    # fullmatch: `$` in a pattern also matches before a final newline, which would split `export`.
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise ConfigError(f"{context}: {name!r} is not a valid environment variable name")
    return name
