"""The conformance kit against every real cluster profile: each backend keeps the generic contract,
validator hooks included. Also the cluster test runner script, end to end on a real cluster, and
its HTML report opened in a real browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clustrix.report import ENDINGS, QUEUED
from tests.conftest import on_each_cluster, run_conformance_kit

pytestmark = pytest.mark.real_world

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "profile",
    on_each_cluster("ssh-local", "ssh-remote", "slurm", "slurm-noacct", "pbs", "pbs-pro", "sge", "kubernetes"),
)
def test_conformance_kit_on_real_clusters(profile, cluster_profile, tmp_path):
    cluster_profile(profile)
    jobs = run_conformance_kit(
        tmp_path, "--clustrix-profile", profile, "--clustrix-config", os.environ["CLUSTRIX_CONFIG"]
    )
    finished = [job for job in jobs if job["error_category"] is None]
    assert all(any(c["name"] == "allocated cores" and c["passed"] for c in job["checks"]) for job in finished)


def run_script(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """scripts/run_cluster_job_tests.py with ``args``, as a user runs it (not under CI's defaults)."""
    command = [sys.executable, str(ROOT / "scripts/run_cluster_job_tests.py"), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, "CI": ""}
    )


@pytest.mark.cluster_group("ssh")
def test_runner_script_checks_runs_and_reports(cluster_profile, tmp_path):
    cluster_profile("ssh-local")
    report = tmp_path / "run.json"
    out = run_script(
        "--cluster",
        "ssh",
        "--tests",
        "basic",
        "--report",
        str(report),
        "--config",
        os.environ["CLUSTRIX_CONFIG"],
        "--",
        "-k",
        "the_job_runs_on_the_host or remote_exception_comes_back",
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "ssh-local" in out.stdout and "PASSED" in out.stdout
    data = json.loads(report.read_text())
    assert data["passed"] is True
    assert {p["profile"] for p in data["clusters"]["ssh"] if p["available"]} >= {"ssh-local", "ssh-remote"}
    assert len(data["tests"]) == 4 and all(t["outcome"] == "passed" and t["job_ids"] for t in data["tests"])


@pytest.mark.cluster_group("slurm")
def test_runner_script_writes_an_html_report_that_a_browser_renders(cluster_profile, open_in_chromium, tmp_path):
    cluster_profile("slurm")
    report, page = tmp_path / "run.json", tmp_path / "run.html"
    out = run_script(
        "--cluster",
        "slurm",
        "--report",
        str(report),
        "--html",
        str(page),
        "--config",
        os.environ["CLUSTRIX_CONFIG"],
        "--",
        "-k",
        "validator_sees_what_slurm_allocated",
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    data = json.loads(report.read_text())
    # Two tests (accounted by sacct, and by the runner), one job each, both validated.
    assert [t["outcome"] for t in data["tests"]] == ["passed", "passed"]
    jobs = data["jobs"]
    assert len(jobs) == 2 and all(job["cluster"] == "slurm" and job["state"] == "COMPLETED" for job in jobs)
    assert all(job["submitted"] <= job["started"] < job["ended"] for job in jobs)
    checks = sum(len(job["checks"]) for job in data["validation"])

    rendered = open_in_chromium(page)
    rows = [row["class"] for row in rendered.elements("tr") if row.get("class")]
    assert rows.count("test passed") == 2 and rows.count("job") == 2
    assert rows.count("check passed") == checks and "check failed" not in rows
    spans = sorted(g["id"] for g in rendered.elements("g") if g.get("id", "").startswith(("queued-", "running-")))
    assert spans == ["queued-0", "queued-1", "running-0", "running-1"]
    # Drawn, not only in the DOM: the screenshot shows the queued and the completed spans.
    assert rendered.pixels(QUEUED) > 50 and rendered.pixels(ENDINGS["completed"]) > 500


def test_runner_script_fails_for_a_cluster_that_is_not_there(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/run_cluster_job_tests.py"),
            "--cluster",
            "ssh",
            "--check-only",
            "--config",
            str(empty),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 1
    assert "no profile with backend = 'ssh'" in out.stdout and "not available: ssh" in out.stdout


def test_test_system_self_check():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/test_cluster_job_system.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout
    assert out.stdout.count("ok    ") == 6


@pytest.mark.cluster_group("ssh")
def test_runner_script_counts_a_run_of_no_tests_as_a_failure_when_clusters_are_required(cluster_profile, tmp_path):
    cluster_profile("ssh-local")
    out = run_script(
        "--cluster",
        "ssh",
        "--require",
        "--report",
        str(tmp_path / "run.json"),
        "--config",
        os.environ["CLUSTRIX_CONFIG"],
        "--",
        "-k",
        "no_test_has_this_name",
        timeout=300,
    )
    assert out.returncode == 1, out.stdout[-3000:]
    assert "no tests collected" in out.stdout
    assert json.loads((tmp_path / "run.json").read_text())["passed"] is False
