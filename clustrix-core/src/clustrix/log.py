"""structlog loggers on top of the standard ``logging`` tree (logger ``clustrix``).

The application decides levels and handlers as it does for any library; clustrix
only adds key/value rendering, bound job ids, and redaction of secrets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

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


def get_logger(**bound: Any) -> structlog.stdlib.BoundLogger:
    return structlog.wrap_logger(
        logging.getLogger("clustrix"),
        processors=[
            structlog.stdlib.filter_by_level,
            redact_secrets,
            structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    ).bind(**bound)
