#!/usr/bin/env python3
"""Run the real-world job tests against configured clusters and write a JSON and an HTML report.

    scripts/run_cluster_job_tests.py --cluster all|slurm|pbs|sge|kubernetes|ssh
        [--tests basic|expensive|all] [--timeout SECONDS] [--check-only]
        [--report PATH] [--html PATH] [--config FILE] [--require] [-- PYTEST_ARGS...]

Clusters are the profiles in the config file (``--config``, else ``$CLUSTRIX_CONFIG``,
else the file tests/clusters/up writes), grouped by backend. ``--check-only`` probes
each profile (plugin installed, host reachable, scheduler answers) and prints a table.
``all`` runs what is available and says what is not; with ``--require`` (default under
``CI=true``) an unavailable cluster, a skipped test or no test at all fails the run.
``--html`` writes the same report as one self-contained page (per cluster: tests,
the validator's checks, a timeline of the jobs); it needs ``clustrix-core[report]``.
Exit status is non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from clustrix import ClustrixError, hookimpl, plugins
from clustrix.job import Job
from clustrix.profiles import resolve
from clustrix.records import iso
from clustrix.session import get_session
from clustrix.state import JobState

ROOT = Path(__file__).resolve().parents[1]
# Cluster kind -> (backend name in profiles, the pip extra that installs its plugin).
KINDS = {
    "slurm": ("slurm", "slurm"),
    "pbs": ("pbs", "pbs"),
    "sge": ("sge", "sge"),
    "kubernetes": ("kubernetes", "k8s"),
    "ssh": ("ssh", "ssh"),
}
DEFAULT_CONFIG = "/var/lib/clustrix-test/clustrix.toml"
MARKERS = {"basic": "real_world and not expensive", "expensive": "real_world and expensive", "all": "real_world"}


def check_profiles(config_file: Path, kinds: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Probe every profile of the given kinds; print a table as we go."""
    os.environ["CLUSTRIX_CONFIG"] = str(config_file)
    profiles = tomllib.loads(config_file.read_text()).get("profiles", {}) if config_file.is_file() else {}
    found: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    print(f"{'CLUSTER':12} {'PROFILE':18} {'STATUS':8} DETAIL")
    for kind in kinds:
        backend, extra = KINDS[kind]
        mine = {name: table for name, table in profiles.items() if table.get("backend") == backend}
        if backend not in plugins.backends():
            print(f"{kind:12} {'-':18} {'missing':8} backend plugin not installed (pip install clustrix[{extra}])")
        elif not mine:
            print(f"{kind:12} {'-':18} {'missing':8} no profile with backend = {backend!r} in {config_file}")
        for name in sorted(mine):
            try:
                config, _ = resolve(name, {})
                detail, ok = get_session(config).backend.check(), True
            except ClustrixError as exc:
                detail, ok = str(exc), False
            found[kind].append({"profile": name, "available": ok, "detail": detail})
            print(f"{kind:12} {name:18} {'ok' if ok else 'DOWN':8} {detail}")
    return found


class Collector:
    """A pytest plugin and a clustrix plugin at once: per-test outcome, duration and job ids, and
    per job its test and when it was submitted, started and ended (the timeline's spans)."""

    def __init__(self, modules: dict[str, str]) -> None:
        self.modules = modules  # test module's file name -> cluster kind
        self.tests: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.current: str | None = None

    def _entry(self, nodeid: str, path: str) -> dict[str, Any]:
        cluster = self.modules.get(Path(path).name, "")
        return self.tests.setdefault(
            nodeid, {"test": nodeid, "cluster": cluster, "outcome": "passed", "duration": 0.0, "job_ids": []}
        )

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.current = item.nodeid
        self._entry(item.nodeid, str(item.path))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self._entry(report.nodeid, report.fspath)
        entry["duration"] += report.duration
        if report.failed:
            entry["outcome"] = "failed"
        elif report.skipped:
            entry["outcome"] = "skipped"

    @hookimpl
    def clustrix_job_submitted(self, job: Job) -> None:
        test = self.tests.get(self.current or "")
        if test is None:
            return
        test["job_ids"].append(job.job_id)
        self.jobs[job.key] = {
            "job_id": job.job_id,
            "test": test["test"],
            "cluster": test["cluster"],
            "state": job.state.value,
            "submitted": iso(job.submitted_at),
            "started": None,
            "ended": None,
        }

    @hookimpl
    def clustrix_job_finished(self, job: Job) -> None:
        entry = self.jobs.get(job.key)
        if entry is None:
            return
        # The runner's own start and end, when it wrote them; else when the client saw the job run and end.
        meta = job.meta or {}
        running = next((when for state, when in job.history if state is JobState.RUNNING), None)
        entry.update(
            state=job.state.value,
            started=meta.get("start") or iso(running),
            ended=meta.get("end") or iso(job.history[-1][1]),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cluster", default="all", choices=["all", *KINDS])
    parser.add_argument("--tests", default="basic", choices=list(MARKERS))
    parser.add_argument("--timeout", type=float, default=900, help="per-test limit in seconds")
    parser.add_argument("--check-only", action="store_true")
    parser.add_argument("--report", type=Path)
    parser.add_argument("--html", type=Path, help="also write the report as a page (needs clustrix-core[report])")
    parser.add_argument("--config", type=Path, default=Path(os.environ.get("CLUSTRIX_CONFIG") or DEFAULT_CONFIG))
    parser.add_argument("--require", action="store_true", default=os.environ.get("CI", "").lower() == "true")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args()

    kinds = list(KINDS) if args.cluster == "all" else [args.cluster]
    found = check_profiles(args.config, kinds)
    available = [k for k in kinds if any(p["available"] for p in found[k])]
    unavailable = [k for k in kinds if k not in available]
    if unavailable:
        print(f"not available: {', '.join(unavailable)}")
    failed = bool(unavailable) and (args.require or args.cluster != "all")
    report: dict[str, Any] = {"clusters": found, "tests": [], "jobs": [], "validation": []}
    if not args.check_only and available:
        modules = {p: k for k in available for p in sorted(ROOT.glob(f"tests/real_world/test_{k}_*_real.py"))}
        validation = Path(args.report or "reports/cluster-job-tests.json").with_suffix(".validation.json")
        collector = Collector({p.name: k for p, k in modules.items()})
        plugins.plugin_manager().register(collector)
        started = time.monotonic()
        code = pytest.main(
            [
                "-v",
                "-p",
                "no:cacheprovider",
                "-m",
                MARKERS[args.tests],
                f"--timeout={args.timeout:g}",
                f"--clustrix-config={args.config}",
                f"--clustrix-report={validation}",
                *(["--require-clusters"] if args.require else []),
                *map(str, modules),
                *args.pytest_args,
            ],
            plugins=[collector],
        )
        report["tests"] = list(collector.tests.values())
        report["jobs"] = list(collector.jobs.values())
        report["duration"] = time.monotonic() - started
        if validation.exists():
            report["validation"] = json.loads(validation.read_text())["jobs"]
        skipped = [t["test"] for t in report["tests"] if t["outcome"] == "skipped"]
        if args.require and (code == pytest.ExitCode.NO_TESTS_COLLECTED or skipped):
            # Clusters are required: a test that did not run is not a pass.
            print(f"required clusters, but {len(skipped)} test(s) skipped" if skipped else "no tests collected")
            failed = True
        failed |= code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    report["passed"] = not failed
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2))
        print(f"report: {args.report}")
    if args.html:
        # Imported only here: the page's libraries are an optional extra.
        from clustrix.report import write_html

        write_html(report, args.html)
        print(f"HTML report: {args.html}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
