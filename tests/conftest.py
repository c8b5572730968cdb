"""Shared fixtures: every test gets its own profiles file, journal and job directory."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def local_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a profiles file with a ``local`` profile whose jobs live under ``tmp_path``.

    Returns a function: ``local_profile(**keys)`` adds keys to the profile and returns
    its name. The real-world profiles file, if any, is not touched.
    """
    config_file = tmp_path / "clustrix.toml"
    workdir = tmp_path / "jobs"
    config_file.write_text("")
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(config_file))
    monkeypatch.setenv("CLUSTRIX_JOURNAL", str(tmp_path / "journal.jsonl"))
    monkeypatch.delenv("CLUSTRIX_PROFILE", raising=False)

    def make(name: str = "test", **keys: object) -> str:
        keys = {"backend": "local", "workdir": str(workdir), **keys}
        lines = [f"[profiles.{name}]"] + [f"{k} = {_toml(v)}" for k, v in keys.items()]
        with open(config_file, "a") as f:
            f.write("\n".join(lines) + "\n")
        return name

    make.workdir = workdir  # type: ignore[attr-defined]
    return make


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def wait_for(predicate, timeout: float, what: str):
    """Poll ``predicate`` until it returns something true (returned), or fail after ``timeout`` s."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")


def with_marker(value, marker):
    """``value`` (a string, or lists and tables of them) with ``{marker}`` filled in, keys included."""
    if isinstance(value, str):
        return value.format(marker=marker)
    if isinstance(value, list):
        return [with_marker(v, marker) for v in value]
    return {with_marker(k, marker): with_marker(v, marker) for k, v in value.items()}


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for init counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def run_conformance_kit(tmp_path: Path, *target: str) -> list[dict]:
    """Run ``pytest --pyargs clustrix.conformance`` with ``target`` options, as a backend author would.

    Asserts the kit passed all five tests; returns the validator's report of every job it ran.
    """
    import json
    import os
    import subprocess
    import sys

    report = tmp_path / "conformance-report.json"
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
            *target,
            "--clustrix-report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env={**os.environ, "CI": ""},
    )
    assert out.returncode == 0, out.stdout[-4000:]
    assert "5 passed" in out.stdout
    jobs = json.loads(report.read_text())["jobs"]
    assert len(jobs) == 13 and all(job["passed"] for job in jobs), [j for j in jobs if not j["passed"]]
    return jobs


def profile_table(profile: str) -> dict:
    """The keys of a profile in the current profiles file ($CLUSTRIX_CONFIG)."""
    import os
    import tomllib

    return tomllib.loads(Path(os.environ["CLUSTRIX_CONFIG"]).read_text())["profiles"][profile]


def use_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: str, name: str, **overrides: object) -> str:
    """Add a profile ``name`` (``base``'s keys with ``overrides``) to a temporary copy of the profiles file."""
    import json
    import os

    current = Path(os.environ["CLUSTRIX_CONFIG"])
    table = {**profile_table(base), **overrides}
    lines = [f"[profiles.{name}]"] + [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    path = tmp_path / f"{name}.toml"
    path.write_text(current.read_text() + "\n" + "\n".join(lines) + "\n")
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(path))
    return name
