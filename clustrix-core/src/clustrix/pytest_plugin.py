"""pytest plugin (entry point ``pytest11``): markers and fixtures for tests that submit real jobs.

Fixtures: ``cluster_profile`` (a named profile, or a clear skip/fail), ``cluster_validator``
(one ClusterJobValidator per run; ``--clustrix-report PATH`` writes its JSON report), and
``conformance_profile`` for the conformance kit: ``pytest --pyargs clustrix.conformance
--clustrix-backend NAME`` (or ``--clustrix-profile NAME``) runs the generic suite against
any installed backend.

Real-world tests name the profile they need (``cluster_profile("slurm")``). Profiles come
from ``--clustrix-config`` (default ``$CLUSTRIX_CONFIG``), the same TOML users write, so
the suite runs unchanged against the local test clusters or a university cluster. A
missing profile skips the test with its reason, except with ``--require-clusters`` or
under CI (``CI=true``), where it fails: CI never counts an absent cluster as a pass.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from clustrix.validation import ClusterJobValidator

_VALIDATOR = pytest.StashKey[ClusterJobValidator]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("clustrix")
    group.addoption(
        "--clustrix-config",
        default=os.environ.get("CLUSTRIX_CONFIG"),
        help="TOML file with the profiles real-world tests use (default: $CLUSTRIX_CONFIG)",
    )
    group.addoption(
        "--require-clusters",
        action="store_true",
        default=os.environ.get("CI", "").lower() == "true",
        help="fail, instead of skipping, a real-world test whose cluster profile is missing (default under CI=true)",
    )
    group.addoption("--clustrix-report", default=None, help="write the validator's JSON report of every job here")
    group.addoption("--clustrix-backend", default=None, help="conformance kit: run it on this backend, default keys")
    group.addoption("--clustrix-profile", default=None, help="conformance kit: run it on this profile")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "real_world: submits real jobs to a real cluster and checks what happened")
    config.addinivalue_line("markers", "expensive: a real-world test that takes minutes (long jobs, time limits)")
    config.stash[_VALIDATOR] = ClusterJobValidator()


def pytest_sessionfinish(session: pytest.Session) -> None:
    report = session.config.getoption("--clustrix-report")
    validator = session.config.stash.get(_VALIDATOR, None)
    if report and validator is not None:
        validator.write_report(report)


@pytest.fixture
def cluster_validator(request: pytest.FixtureRequest) -> ClusterJobValidator:
    """The run's validator: every ``validate()`` lands in the ``--clustrix-report`` JSON."""
    return request.config.stash[_VALIDATOR]


@pytest.fixture
def conformance_profile(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster_profile
) -> str:
    """The profile the conformance kit runs on: ``--clustrix-profile``, or a fresh one for ``--clustrix-backend``."""
    profile = request.config.getoption("--clustrix-profile")
    backend = request.config.getoption("--clustrix-backend")
    if profile:
        return cluster_profile(profile)
    if not backend:
        pytest.fail("the conformance kit needs --clustrix-backend NAME or --clustrix-profile NAME")
    config_file = tmp_path / "conformance.toml"
    config_file.write_text(f'[profiles.conformance]\nbackend = "{backend}"\nworkdir = "{tmp_path / "jobs"}"\n')
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(config_file))
    return "conformance"


@pytest.fixture
def cluster_profile(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """``cluster_profile(name)`` makes the named profile usable by ``@cluster(profile=name)`` and returns it."""
    config_file = request.config.getoption("--clustrix-config")
    required = request.config.getoption("--require-clusters")

    def use(name: str) -> str:
        problem = None
        if not config_file:
            problem = "no profiles file: pass --clustrix-config or set CLUSTRIX_CONFIG (tests/clusters/up writes one)"
        elif not Path(config_file).is_file():
            problem = f"profiles file {config_file} does not exist (run tests/clusters/up)"
        elif name not in tomllib.loads(Path(config_file).read_text()).get("profiles", {}):
            problem = f"profile {name!r} is not in {config_file} (is its cluster up? tests/clusters/up)"
        if problem:
            if required:
                pytest.fail(f"real cluster required but missing: {problem}")
            pytest.skip(problem)
        monkeypatch.setenv("CLUSTRIX_CONFIG", str(config_file))
        return name

    return use
