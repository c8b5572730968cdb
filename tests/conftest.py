"""Shared fixtures: every test gets its own profiles file, journal and job directory."""

from __future__ import annotations

import html.parser
import json
import shutil
import subprocess
from pathlib import Path

import attrs
import pytest

from clustrix import hookimpl
from clustrix.plugins import plugin_manager


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cluster-group",
        default=None,
        help="run only the tests of this cluster group (their cluster_group mark; 'core': those without one)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # scripts/test runs each cluster group's tests in a pytest of its own, side by side (most of a
    # real-world test's time is spent waiting on its scheduler), then the tests marked alone.
    config.addinivalue_line(
        "markers", "cluster_group(name): the test uses that group's cluster: run in order with the group's others"
    )
    config.addinivalue_line(
        "markers", "alone: stops a daemon that tests of other groups use: run by itself, not beside them"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    group = config.getoption("--cluster-group")
    if group is None:
        return
    keep, drop = [], []
    for item in items:
        mark = item.get_closest_marker("cluster_group")
        (keep if (mark.args[0] if mark else "core") == group else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


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


# The cluster group of each test profile (scripts/test runs the groups side by side). A group's
# tests share its daemons and queues: the PBS tests remove what they find new in their profile's
# workdir, OpenPBS's check its whole queue, and Slurm main's two cores run the Torque wrapper's jobs.
CLUSTER_GROUPS = {
    "local": "core",
    "ssh-local": "ssh",
    "ssh-remote": "ssh",
    "slurm": "slurm",
    "slurm-noacct": "slurm",
    "pbs": "slurm",
    "pbs-pro": "pbspro",
    "sge": "sge",
    "kubernetes": "k8s",
}


def on_each_cluster(*profiles: str) -> list:
    """``profiles`` as parameters, each marked with its cluster's group."""
    return [pytest.param(profile, marks=pytest.mark.cluster_group(CLUSTER_GROUPS[profile])) for profile in profiles]


class Submissions:
    """Every job submitted while registered, by the id of the submission it came in."""

    def __init__(self) -> None:
        self.job_ids: list[str] = []

    @hookimpl
    def clustrix_job_submitted(self, job):
        self.job_ids.append(job.job_id)


@pytest.fixture
def submissions():
    recorder = Submissions()
    plugin_manager().register(recorder)
    yield recorder
    plugin_manager().unregister(recorder)


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


def kill_workers_mid_map(futures, kill) -> dict[int, object]:
    """Run ``kill()`` (ending a map's workers) once a few calls ended; each call's value, or "cancelled".

    Checks what every backend owes such a map: calls that ended keep their values, and only
    the calls the killed workers were running fail (at most two on the clusters' two CPUs).
    """
    from clustrix import JobCancelledError

    wait_for(lambda: sum(f.done() for f in futures) >= 3, 120, "a few calls to end")
    done_before = {i: f.result() for i, f in enumerate(futures) if f.done()}
    kill()
    outcomes: dict[int, object] = {}
    for i, f in enumerate(futures):
        try:
            outcomes[i] = f.result(timeout=300)
        except JobCancelledError:
            outcomes[i] = "cancelled"
    assert {i: outcomes[i] for i in done_before} == done_before, "finished calls keep their values"
    cancelled = [i for i, v in outcomes.items() if v == "cancelled"]
    assert len(cancelled) <= 2, f"only the calls running in the killed workers fail: {outcomes}"
    return outcomes


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


# Chromium tries Google's update and sign-in services even with these flags. So it runs in a network
# namespace of its own (no interface but a loopback that is down), every host name resolves to
# nothing and any proxy connection goes to a closed loopback port: it reaches no address.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--no-pings",
    "--metrics-recording-only",
    "--disable-features=Translate,MediaRouter,OptimizationHints,NetworkTimeServiceQuerying",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--force-color-profile=srgb",
    "--window-size=1280,2400",
)


@attrs.frozen
class Rendered:
    """What Chromium made of a page: the DOM after loading it, and a screenshot."""

    dom: str
    screenshot: Path

    def elements(self, tag: str) -> list[dict[str, str | None]]:
        """The attributes of every ``tag`` element in the DOM, in order."""
        found: list[dict[str, str | None]] = []

        class Parser(html.parser.HTMLParser):
            def handle_starttag(self, name, attributes):
                if name == tag:
                    found.append(dict(attributes))

        Parser().feed(self.dom)
        return found

    def pixels(self, colour: str) -> int:
        """How many pixels of the screenshot are ``colour`` (``#rrggbb``), give or take rounding."""
        from matplotlib.image import imread  # the report extra's; only these tests need it

        image = imread(self.screenshot)[..., :3]
        wanted = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        return int((abs(image - wanted) <= 2 / 255).all(axis=-1).sum())


@pytest.fixture
def open_in_chromium(request: pytest.FixtureRequest, tmp_path: Path):
    """``open_in_chromium(page)``: Debian's chromium, headless and offline, loads the file; returns a
    ``Rendered``. Fails if chromium sent a byte on any socket. Chromium missing: a skip, or a failure
    where the machine was set up for the tests (``--require-clusters``: scripts/test installs it there)."""
    if shutil.which("chromium") is None:
        reason = "chromium is not installed (scripts/chromium installs it, as root on Debian)"
        if request.config.getoption("--require-clusters"):
            pytest.fail(reason)
        pytest.skip(reason)

    def run(page: Path, *action: str) -> str:
        netlog = tmp_path / "chromium-netlog.json"
        command = ["unshare", "--net", "--map-root-user", "chromium", *CHROMIUM_FLAGS]
        command += [f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--log-net-log={netlog}", *action]
        out = subprocess.run([*command, page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        log = json.loads(netlog.read_text())
        names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
        sent = [names[event["type"]] for event in log["events"] if names[event["type"]].endswith("BYTES_SENT")]
        assert not sent, f"chromium sent bytes on a socket: {sent}"
        return out.stdout

    def open_page(page: Path) -> Rendered:
        screenshot = tmp_path / "screenshot.png"
        dom = run(page, "--dump-dom")
        run(page, f"--screenshot={screenshot}")
        return Rendered(dom=dom, screenshot=screenshot)

    return open_page
