"""The conformance kit runs against any installed backend by name; proven on local and a third party's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("backend", ["local", "example"])
def test_conformance_kit_passes(backend, tmp_path):
    report = tmp_path / "report.json"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--pyargs",
            "clustrix.conformance",
            "--clustrix-backend",
            backend,
            "--clustrix-report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "CI": ""},
    )
    assert out.returncode == 0, out.stdout[-3000:]
    assert "5 passed" in out.stdout
    jobs = json.loads(report.read_text())["jobs"]
    assert len(jobs) == 13 and all(job["passed"] and job["backend"] == backend for job in jobs)


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
