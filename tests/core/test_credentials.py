"""Credential lookups in order, their errors, and that no found secret reaches a log line.

There is no 1Password account here: ``op`` is a small script on PATH that answers
``op read`` for one reference the way the real CLI does, and fails for others.
"""

from __future__ import annotations

import logging

import pytest

from clustrix.credentials import CredentialError, lookup
from clustrix.log import get_logger

FAKE_OP = """#!/bin/sh
[ "$1" = read ] && [ "$2" = --no-newline ] || exit 2
case "$3" in
  op://lab/cluster/password) printf 's3cr3t-from-op' ;;
  *) echo "[ERROR] could not read secret '$3': item not found" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def op_on_path(tmp_path, monkeypatch):
    op = tmp_path / "bin" / "op"
    op.parent.mkdir()
    op.write_text(FAKE_OP)
    op.chmod(0o755)
    monkeypatch.setenv("PATH", f"{op.parent}:/usr/bin:/bin")


def test_profile_value_wins(monkeypatch):
    monkeypatch.setenv("CX_PW", "from-env")
    assert lookup("password", configured="literal", env=["CX_PW"]) == "literal"


def test_environment_then_op_reference(monkeypatch, op_on_path):
    monkeypatch.setenv("CX_PW", "from-env")
    assert lookup("password", env=["CX_PW"]) == "from-env"
    monkeypatch.delenv("CX_PW")
    monkeypatch.setenv("CX_PW_OP", "op://lab/cluster/password")
    assert lookup("password", env=["CX_PW"]) == "s3cr3t-from-op"


def test_op_reference_in_profile(op_on_path):
    assert lookup("password", configured="op://lab/cluster/password") == "s3cr3t-from-op"
    with pytest.raises(CredentialError, match="item not found"):
        lookup("password", configured="op://lab/nothing/here")


def test_op_missing_is_clear(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CredentialError, match="1Password CLI `op`, which is not installed"):
        lookup("password", configured="op://lab/cluster/password")


def test_nothing_found_names_every_lookup(monkeypatch):
    monkeypatch.delenv("CX_PW", raising=False)
    monkeypatch.delenv("CX_PW_OP", raising=False)
    with pytest.raises(CredentialError, match=r"no password found; tried: \$CX_PW, \$CX_PW_OP"):
        lookup("password", env=["CX_PW"])


def test_found_secret_is_never_logged(monkeypatch, caplog):
    monkeypatch.setenv("CX_TOKEN", "tok-123456789")
    token = lookup("token", env=["CX_TOKEN"])
    caplog.set_level(logging.DEBUG, logger="clustrix")
    get_logger().info("connecting", command=f"curl -H 'Authorization: {token}'", note=token)
    assert "tok-123456789" not in caplog.text
    assert "Authorization: ***" in caplog.text
