"""structlog loggers on top of the standard ``logging`` tree (logger ``clustrix``).

The application decides levels and handlers as it does for any library; clustrix
only adds key/value rendering, bound job ids, and redaction of secrets. structlog
(which imports rich when it is installed) is imported by the first line a level lets
through, so a program that logs nothing from clustrix never loads it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import structlog

REDACTED = "***"
SECRET_KEY = re.compile(r"pass(word|phrase)?|secret|token|credential|private_key|api_key|hmac_key", re.IGNORECASE)


_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Never log ``value``: it is replaced wherever it appears in a log line."""
    if value:
        _secrets.add(value)


def _scrub(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, REDACTED)
    return text


def redact_secrets(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of any key that names a secret, at any depth of dicts, and every known secret."""
    for key, value in list(event.items()):
        if SECRET_KEY.search(str(key)):
            event[key] = REDACTED
        elif isinstance(value, dict):
            event[key] = redact_secrets(_logger, _method, dict(value))
        elif _secrets and isinstance(value, str):
            event[key] = _scrub(value)
    return event


_STDLIB_LOGGER = logging.getLogger("clustrix")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}


class Logger:
    """A structlog stdlib ``BoundLogger`` with key/values bound, made when a line first passes the level.

    A call below the ``clustrix`` logger's level returns at once, where structlog's
    ``filter_by_level`` would have dropped it; any other attribute is the BoundLogger's own.
    """

    def __init__(self, bound: dict[str, Any]) -> None:
        self._bound = bound
        self._wrapped: structlog.stdlib.BoundLogger | None = None

    def bind(self, **values: Any) -> Logger:
        return Logger({**self._bound, **values})

    def debug(self, event: str | None = None, *args: Any, **kw: Any) -> None:
        self._emit("debug", event, args, kw)

    def info(self, event: str | None = None, *args: Any, **kw: Any) -> None:
        self._emit("info", event, args, kw)

    def warning(self, event: str | None = None, *args: Any, **kw: Any) -> None:
        self._emit("warning", event, args, kw)

    def error(self, event: str | None = None, *args: Any, **kw: Any) -> None:
        self._emit("error", event, args, kw)

    def exception(self, event: str | None = None, *args: Any, **kw: Any) -> None:
        self._emit("exception", event, args, kw)

    def critical(self, event: str | None = None, *args: Any, **kw: Any) -> None:
        self._emit("critical", event, args, kw)

    def __getattr__(self, name: str) -> Any:
        # Private names are not forwarded: copy and pickle look them up before __init__ has run.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._bound_logger(), name)

    def _emit(self, method: str, event: str | None, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        # structlog's filter_by_level test, before structlog is needed.
        if _STDLIB_LOGGER.disabled or _LEVELS[method] < _STDLIB_LOGGER.getEffectiveLevel():
            return
        getattr(self._bound_logger(), method)(event, *args, **kw)

    def _bound_logger(self) -> structlog.stdlib.BoundLogger:
        if self._wrapped is None:
            import structlog

            self._wrapped = structlog.wrap_logger(
                _STDLIB_LOGGER,
                processors=[
                    structlog.stdlib.filter_by_level,
                    redact_secrets,
                    structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
                ],
                wrapper_class=structlog.stdlib.BoundLogger,
            ).bind(**self._bound)
        return self._wrapped


def get_logger(**bound: Any) -> Logger:
    return Logger(bound)
