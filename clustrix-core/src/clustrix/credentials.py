"""Credentials (passwords, passphrases, tokens): looked up, never hard-coded, never logged.

``lookup(name, configured=..., env=[...])`` tries, in order:

1. the profile's value: a literal, or ``op://vault/item/field`` read with the 1Password
   CLI (``op read``) when ``op`` is installed;
2. environment variables (in GitHub Actions, repository secrets arrive this way:
   ``env: CLUSTRIX_SSH_PASSWORD: ${{ secrets.CLUSTRIX_SSH_PASSWORD }}``);
3. a 1Password reference in ``<VARIABLE>_OP`` for each of those variables.

Every value found is registered with the log redactor, so it never appears in a log line,
whatever key it is logged under. Nothing found: ``CredentialError`` naming each lookup tried.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from clustrix.errors import ConfigError
from clustrix.log import register_secret

OP_PREFIX = "op://"


class CredentialError(ConfigError):
    """No lookup found the credential; the message lists every lookup tried."""


def _op_read(reference: str) -> str:
    op = shutil.which("op")
    if op is None:
        raise CredentialError(f"{reference} needs the 1Password CLI `op`, which is not installed")
    out = subprocess.run([op, "read", "--no-newline", reference], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise CredentialError(f"`op read` of {reference} failed: {out.stderr.strip()}")
    return out.stdout


def lookup(name: str, *, configured: str | None = None, env: Sequence[str] = ()) -> str:
    tried = []
    value = None
    if configured is not None:
        value = _op_read(configured) if configured.startswith(OP_PREFIX) else configured
        tried.append("the profile")
    for variable in env:
        if value is not None:
            break
        tried.append(f"${variable}")
        value = os.environ.get(variable)
    for variable in env:
        if value is not None:
            break
        tried.append(f"${variable}_OP")
        reference = os.environ.get(f"{variable}_OP")
        if reference:
            value = _op_read(reference)
    if not value:
        raise CredentialError(f"no {name} found; tried: {', '.join(tried) or 'nothing'}")
    register_secret(value)
    return value
