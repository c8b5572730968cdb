"""The conformance kit runs against any installed backend by name; proven on local and a third party's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import run_conformance_kit


@pytest.mark.parametrize("backend", ["local", "example"])
def test_conformance_kit_passes(backend, tmp_path):
    jobs = run_conformance_kit(tmp_path, "--clustrix-backend", backend)
    assert all(job["backend"] == backend for job in jobs)


def test_conformance_kit_without_a_target_fails_clearly(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", "clustrix.conformance"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 1
    assert "needs --clustrix-backend NAME or --clustrix-profile NAME" in out.stdout
