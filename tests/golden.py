"""Golden tests of a batch scheduler's job scripts and command lines, with no cluster.

``render`` submits fixed specs through a real backend class over a transport that keeps
files in memory and answers the submit command with a fixed id, so what the backend would
write and run is compared with a file in the test's ``golden/`` folder: a change to a
script is a visible diff. ``CLUSTRIX_UPDATE_GOLDEN=1`` rewrites the files. The real
schedulers run the same scripts in tests/real_world.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clustrix.backend import StagedJob
from clustrix.batch import BatchBackend
from clustrix.config import ClusterConfig
from clustrix.resources import Resources
from clustrix.spec import JobSpec
from clustrix.transport import CommandResult, Transport

WORKDIR = "/scratch/alice/clustrix"


class RecordingTransport(Transport):
    """Files in a dict; every command recorded and answered with ``answer`` (the submit's job id)."""

    def __init__(self, config: ClusterConfig, answer: str) -> None:
        super().__init__(config)
        self.answer = answer
        self.files: dict[str, bytes] = {}
        self.commands: list[str] = []

    def run(self, argv, *, input=None, env=None, timeout=0.0) -> CommandResult:
        prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in sorted((env or {}).items()))
        self.commands.append(prefix + shlex.join(argv))
        return CommandResult(tuple(argv), 0, self.answer, "")

    def home(self) -> str:
        return "/home/alice"

    def make_dirs(self, paths: Sequence[str], mode: int = 0o700) -> None:
        pass

    def write_files(self, files: Mapping[str, bytes], mode: int = 0o600) -> None:
        self.files.update(files)

    def read_file(self, path: str, tail: int | None = None, max_size: int | None = None, start: int = 0) -> bytes:
        raise FileNotFoundError(path)

    def remove_trees(self, paths: Sequence[str]) -> None:
        pass


def add(x: int, y: int) -> int:
    return x + y


def spec(**resources: Any) -> JobSpec:
    return JobSpec(
        fn=add,
        args=(1, 2),
        kwargs={},
        resources=Resources(**resources),
        name="train model;v2",
        env={"DATA": "/data/it's here", "MODE": "fast"},
        setup=("module load python/3.11",),
        python="/opt/envs/x/bin/python",
    )


def render(
    backend_cls: type[BatchBackend],
    answer: str,
    calls: int,
    chunksize: int | None = 1,
    options: Sequence[tuple[str, Any]] = (),
    after: tuple[str, ...] = (),
    **resources: Any,
) -> str:
    """Everything the backend writes and runs to submit ``calls`` calls, as one text."""
    config = ClusterConfig(
        profile="golden", backend="golden", transport="golden", workdir=WORKDIR, options=tuple(options)
    )
    transport = RecordingTransport(config, answer)
    backend = backend_cls(config, transport)
    jobs = [
        StagedJob(key=f"key{i}", directory=f"{WORKDIR}/key{i}", spec=spec(**resources), after=after)
        for i in range(calls)
    ]
    ids = backend.submit(jobs, chunksize=chunksize)
    parts = [f"$ {command}" for command in transport.commands]
    parts += [
        f"--- {path}\n" + ("(runner.py)\n" if path.endswith("/runner.py") else data.decode())
        for path, data in sorted(transport.files.items())
    ]
    parts.append(f"ids: {' '.join(ids)}")
    # The batch directory's name is random.
    return re.sub(r"batch-[0-9a-f]{32}", "batch-UUID", "\n".join(parts) + "\n")


def assert_golden(text: str, path: Path) -> None:
    if os.environ.get("CLUSTRIX_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.is_file(), f"{path} is missing: run with CLUSTRIX_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(), f"the rendered script differs from {path}"
