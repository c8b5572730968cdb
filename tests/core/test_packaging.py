"""Every distribution in the repo builds a wheel; a fresh venv installs `clustrix[all]` from them
and finds each plugin through its entry point alone."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def distributions() -> list[Path]:
    return [ROOT, *sorted(p.parent for p in ROOT.glob("clustrix-*/pyproject.toml")), ROOT / "tests/example_plugin"]


def run(*argv: str | Path) -> str:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{argv}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
    return out.stdout


def test_wheels_install_and_plugins_are_discovered(tmp_path):
    wheels = tmp_path / "wheels"
    for dist in distributions():
        run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, dist)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    run(venv / "bin/pip", "install", "--quiet", "--find-links", wheels, "clustrix[all]", "clustrix-example-backend")

    listing = run(venv / "bin/clustrix", "backends")
    backends = {line.split()[1] for line in listing.splitlines() if line.startswith("backend")}
    assert {"local", "example"} <= backends
    # Each extra's plugin registered the backend its name promises.
    promised = {"ssh": "ssh", "slurm": "slurm", "pbs": "pbs", "sge": "sge", "k8s": "kubernetes"}
    assert {promised[extra] for extra in extras if extra != "all"} <= backends

    value = run(
        venv / "bin/python",
        "-c",
        "from clustrix import cluster\nprint(cluster(lambda x, y: x + y)(10, 32))",
    )
    assert value.strip() == "42"
