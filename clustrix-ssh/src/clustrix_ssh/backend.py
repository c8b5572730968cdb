"""The ``ssh`` backend: the core's process backend (detached process groups) on a host reached over SSH.

All the job handling is ``ProcessBackend``'s; this adds the one thing a remote host can get
wrong that this machine cannot: a Python whose major.minor differs from the client's, which
could not unpickle the call. It is asked once per interpreter and refused at submission.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from clustrix import runner
from clustrix.backend import StagedJob
from clustrix.backends.process import ProcessBackend
from clustrix.errors import SubmissionError
from clustrix.log import get_logger
from clustrix.spec import JobSpec

# Printed after the setup lines, so whatever they print cannot be mistaken for the version.
_VERSION_MARK = "clustrix-python-version"
_VERSION_CODE = f"import sys; print('{_VERSION_MARK}', '%d.%d' % sys.version_info[:2], sys.executable)"


class SSHBackend(ProcessBackend):
    """Jobs as process groups on an SSH host; the host's Python must match this one's major.minor."""

    default_transport = "ssh"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # (interpreter, setup lines) -> the version it reported; setup may change which python3 is found.
        self._versions: dict[tuple[str, tuple[str, ...]], str] = {}
        self._versions_lock = threading.Lock()
        self._log = get_logger(cluster=self.config.label)

    def submit(self, jobs: Sequence[StagedJob], chunksize: int = 1) -> list[str]:
        for spec in {(job.spec.python, job.spec.setup): job.spec for job in jobs}.values():
            self._check_python(spec)
        return super().submit(jobs, chunksize)

    def _check_python(self, spec: JobSpec) -> None:
        python = self.python_for(spec)
        remote = self._remote_version((python, spec.setup))
        local = runner.python_version()
        if remote != local:
            raise SubmissionError(
                f"{self.config.label}: the job's Python there ({python}) is {remote} but this client runs {local}; "
                "the call is pickled here and must be unpickled by the same major.minor. Point the profile's "
                f"`python` at a Python {local} on the host, or run the client with Python {remote}"
            )

    def _remote_version(self, key: tuple[str, tuple[str, ...]]) -> str:
        with self._versions_lock:
            if key in self._versions:
                return self._versions[key]
        python, setup = key
        script = "\n".join([*setup, 'exec "$0" -c "$1"'])
        result = self.transport.run(["sh", "-c", script, python, _VERSION_CODE])
        lines = [line.split() for line in result.stdout.splitlines() if line.startswith(_VERSION_MARK + " ")]
        if not result.ok or not lines:
            raise SubmissionError(
                f"{self.config.label}: cannot run the job's Python ({python}) there: exit {result.returncode}: "
                f"{result.words}"
            )
        version, executable = lines[-1][1], " ".join(lines[-1][2:])
        self._log.info("remote python", python=python, version=version, executable=executable)
        with self._versions_lock:
            self._versions[key] = version
        return version
