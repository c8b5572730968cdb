#!/usr/bin/env python3
"""Check that the real-cluster test system itself is wired: every part imports and every
real-world test module collects. Prints one line per check; exit status 1 if any failed.

    scripts/test_cluster_job_system.py
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def credential_manager() -> str:
    from clustrix.credentials import CredentialError, lookup

    try:
        lookup("probe", env=["CLUSTRIX_SYSTEM_CHECK_UNSET"])
    except CredentialError as exc:
        return f"lookups named in errors: {exc}"
    raise AssertionError("a lookup of an unset variable found something")


def decorator() -> str:
    from clustrix import ClusterFunction, cluster

    assert isinstance(cluster(cores=1)(abs), ClusterFunction)
    return "@cluster builds a ClusterFunction"


def validator() -> str:
    from clustrix.backend import Backend
    from clustrix.plugins import backends as installed
    from clustrix.validation import ClusterJobValidator

    ClusterJobValidator()
    questions = ("job_in_queue", "job_allocation", "job_metrics")
    answered = {
        name: [q for q in questions if getattr(cls, q) is not getattr(Backend, q)] for name, cls in installed().items()
    }
    silent = [name for name, answers in answered.items() if not {"job_in_queue", "job_allocation"} <= set(answers)]
    assert not silent, f"backends that cannot say whether a job is queued or what it was given: {silent}"
    return "validator questions answered: " + "; ".join(f"{n}: {', '.join(a)}" for n, a in sorted(answered.items()))


def backends() -> str:
    from clustrix.plugins import backends as installed

    return "installed backends: " + ", ".join(installed())


def pytest_plugin() -> str:
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="pytest11")}
    assert "clustrix.pytest_plugin" in names, names
    return "pytest11 entry point registered"


def real_world_modules() -> str:
    modules = sorted(ROOT.glob("tests/real_world/test_*_real.py"))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *map(str, modules)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    counts = [line for line in out.stdout.splitlines() if "collected" in line or "tests collected" in line]
    return f"{len(modules)} modules collect: {counts[-1] if counts else out.stdout.strip().splitlines()[-1]}"


CHECKS: list[tuple[str, Callable[[], str]]] = [
    ("credential manager", credential_manager),
    ("decorator", decorator),
    ("validator", validator),
    ("backends", backends),
    ("pytest plugin", pytest_plugin),
    ("real-world modules", real_world_modules),
]


def main() -> int:
    failed = 0
    for name, check in CHECKS:
        try:
            print(f"ok    {name}: {check()}")
        except Exception as exc:  # noqa: BLE001 - every broken part is reported, not just the first
            failed += 1
            print(f"FAIL  {name}: {type(exc).__name__}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
