"""The GitHub Actions workflows parse, run what the docs say they run, and use the secrets
docs/CREDENTIAL_SETUP.md tells users to add (they cannot run here: this is what can be checked)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def workflow(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github/workflows" / name).read_text())


def test_the_test_workflow_runs_ci_in_a_privileged_debian_12_container():
    job = workflow("test.yml")["jobs"]["test"]
    assert job["container"]["image"] == "debian:12" and "--privileged" in job["container"]["options"]
    steps = [step.get("run", "") for step in job["steps"]]
    assert "bash .ci/run" in steps and job["steps"][steps.index("bash .ci/run")]["env"]["CI"] == "true"


def test_the_own_cluster_workflow_is_manual_and_uses_the_documented_secrets():
    text = (ROOT / ".github/workflows/own-cluster.yml").read_text()
    flow = yaml.safe_load(text)
    assert list(flow[True]) == ["workflow_dispatch"]  # YAML 1.1 reads the key `on` as True
    assert "scripts/run_cluster_job_tests.py --require" in text and "--html" in text
    documented = set(re.findall(r"^\| `(CLUSTRIX_\w+)` \|", (ROOT / "docs/CREDENTIAL_SETUP.md").read_text(), re.M))
    assert (
        set(re.findall(r"secrets\.(\w+)", text))
        == documented
        == {
            "CLUSTRIX_PROFILES",
            "CLUSTRIX_SSH_KEY",
            "CLUSTRIX_SSH_KNOWN_HOSTS",
            "CLUSTRIX_SSH_PASSWORD",
        }
    )
