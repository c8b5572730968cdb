"""Transports: how a backend runs commands and moves files on the cluster's side.

Backends never call ``subprocess`` or open files on the cluster themselves: they
ask their transport. ``LocalTransport`` is this machine; the ``clustrix-ssh``
plugin provides the same interface on a login node over SSH, so any batch backend
works remotely with no code of its own.
"""

from __future__ import annotations

import abc
import contextlib
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs

from clustrix.config import ClusterConfig
from clustrix.errors import BackendUnavailableError, ClustrixError, ResultTooLargeError, SubmissionError

COMMAND_TIMEOUT = 120.0
REMOVE_ATTEMPTS = 3


def existing_directory(path: str) -> str:
    """What make_dirs says of a directory of its own that it found there already."""
    return (
        f"{path} exists already: clustrix creates each job's and batch's directory afresh, so another "
        "process (maybe another user, if the workdir's parent is shared) made it; nothing was submitted"
    )


@attrs.frozen
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def words(self) -> str:
        """What the command said about itself: stderr, else stdout, at most its last 2000 characters."""
        return (self.stderr.strip() or self.stdout.strip() or "(no output)")[-2000:]

    def check(self, error: type[ClustrixError], what: str) -> CommandResult:
        """Raise ``error`` with the command's own words unless it succeeded."""
        if not self.ok:
            raise error(f"{what}: `{shlex.join(self.argv)}` exited {self.returncode}: {self.words}")
        return self


def too_large(path: str, size: int, max_size: int | None) -> None:
    """Refuse to read a file over ``max_size`` bytes (for ``Transport.read_file``)."""
    if max_size is not None and size > max_size:
        raise ResultTooLargeError(
            f"{path} is {size} bytes, over max_result_bytes={max_size}: not read, and left in place"
        )


@attrs.frozen
class FileRead:
    """One file of ``Transport.read_files``: all of it (refused over ``max_size`` bytes), or its last ``tail`` bytes."""

    path: str
    tail: int | None = None
    max_size: int | None = None


class Transport(abc.ABC):
    """Commands and files on the host where the scheduler's commands run."""

    # Profile keys this transport adds, each with its converter (which raises ConfigError).
    options: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}
    # True when paths the transport writes are visible to this process as local files.
    is_local: ClassVar[bool] = False

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> CommandResult:
        """Run ``argv`` (no shell unless argv asks for one); ``env`` is added to the environment."""

    @abc.abstractmethod
    def home(self) -> str:
        """The directory relative paths are resolved against (the user's home there)."""

    @abc.abstractmethod
    def make_dirs(self, paths: Sequence[str], mode: int = 0o700) -> None:
        """Create each directory afresh, in order, and its missing parents, every level with ``mode``.

        A directory of ``paths`` that exists already (a symlink too) is SubmissionError: they are
        new jobs' and batches' own, and one found there was put there by someone else.
        """

    @abc.abstractmethod
    def write_files(self, files: Mapping[str, bytes], mode: int = 0o600) -> None:
        """Write each file atomically with ``mode``; their directories exist."""

    @abc.abstractmethod
    def read_file(self, path: str, tail: int | None = None, max_size: int | None = None, start: int = 0) -> bytes:
        """The file's bytes from byte ``start``, or only its last ``tail`` bytes; FileNotFoundError when absent.

        With ``max_size``, a larger file is not read: ResultTooLargeError.
        """

    def read_files(self, reads: Sequence[FileRead]) -> list[bytes | ResultTooLargeError | None]:
        """Each file's bytes as ``read_file`` reads them, in order: None where it is absent, the
        ResultTooLargeError where it is over its ``max_size``. A transport that pays a round trip per
        file (a remote one) reads them all in one.
        """
        found: list[bytes | ResultTooLargeError | None] = []
        for read in reads:
            try:
                found.append(self.read_file(read.path, tail=read.tail, max_size=read.max_size))
            except FileNotFoundError:
                found.append(None)
            except ResultTooLargeError as exc:
                found.append(exc)
        return found

    @abc.abstractmethod
    def remove_trees(self, paths: Sequence[str]) -> None:
        """Remove each directory and everything in it (one command where it costs one); absent is fine.

        A job still ending may write into one while it goes (a worker's EXIT trap): what it wrote is
        removed too (the removal is tried again, REMOVE_ATTEMPTS times in all).
        """

    def resolve(self, path: str) -> str:
        """An absolute path on the far side for a profile path (``~/x`` and ``x`` are under home)."""
        if path.startswith("~/"):
            path = path[2:]
        return path if path.startswith("/") else f"{self.home().rstrip('/')}/{path}"

    def close(self) -> None:  # noqa: B027 - most transports hold nothing open
        """Release connections; the transport may be used again afterwards."""


class LocalTransport(Transport):
    """This machine: the scheduler's commands are on this host's PATH."""

    is_local = True

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> CommandResult:
        full_env = {**os.environ, **env} if env else None
        try:
            proc = subprocess.run(list(argv), input=input, capture_output=True, env=full_env, timeout=timeout)
        except FileNotFoundError as exc:
            raise BackendUnavailableError(f"`{argv[0]}` is not installed or not on PATH on this machine") from exc
        except subprocess.TimeoutExpired as exc:
            raise BackendUnavailableError(f"`{shlex.join(argv)}` did not answer within {timeout:g} s") from exc
        return CommandResult(
            argv=tuple(argv),
            returncode=proc.returncode,
            stdout=proc.stdout.decode(errors="replace"),
            stderr=proc.stderr.decode(errors="replace"),
        )

    def home(self) -> str:
        return str(Path.home())

    def make_dirs(self, paths: Sequence[str], mode: int = 0o700) -> None:
        # Every level created gets the mode (os.makedirs gives it to the last only: its parents,
        # under a umask of 002, would be group-writable, and the workdir check refuses those).
        for path in paths:
            missing = []
            level = Path(path).parent
            while not level.exists() and level != level.parent:
                missing.append(level)
                level = level.parent
            for directory in reversed(missing):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(directory, mode)
            try:
                os.mkdir(path, mode)
            except FileExistsError:
                raise SubmissionError(existing_directory(path)) from None

    def write_files(self, files: Mapping[str, bytes], mode: int = 0o600) -> None:
        for path, data in files.items():
            tmp = f"{path}.tmp"
            # Created afresh, never through what is there: a planted symlink would send the bytes elsewhere.
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            except FileExistsError:
                os.unlink(tmp)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)

    def read_file(self, path: str, tail: int | None = None, max_size: int | None = None, start: int = 0) -> bytes:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            too_large(path, size, max_size)
            f.seek(max(0, size - tail) if tail is not None else start)
            return f.read()

    def remove_trees(self, paths: Sequence[str]) -> None:
        for path in paths:
            for _ in range(REMOVE_ATTEMPTS):
                shutil.rmtree(path, ignore_errors=True)
                if not os.path.lexists(path):
                    break
