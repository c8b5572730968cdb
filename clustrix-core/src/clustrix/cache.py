"""The client's cache of call results (``cache=True``, or a directory): a call found there is not submitted.

A call's entry is ROOT/FUNCTION/KEY: KEY its 64 hex digits (``clustrix.callkey`` says what they
hash), FUNCTION its function's module and name made safe as a file name, for ``clustrix cache
list`` only (the key alone decides a hit). ROOT is ``results`` in the user's cache directory
(``$XDG_CACHE_HOME/clustrix`` on Linux), or the directory given.

An entry is an envelope (``runner.pack``, kind ``cached``, the results' format) of the key and
the value, authenticated with this user's cache key: 32 random bytes in the user's state
directory, mode 0600, made on first use and never kept in the cache itself, so a cache directory
that was copied in or written by someone else holds nothing this client trusts. An entry that
fails its MAC, cannot be unpickled or holds another key is logged and taken as a miss: the call
runs again and its new entry replaces it. Only a call that returned is stored, as soon as its
value is back (a client killed later keeps what it had collected), and before its future is
resolved. Directories are made 0700, files 0600; an entry is written to a temporary file and
renamed into place, so no reader, nor a client killed mid-write, sees part of one.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import os
import re
import secrets
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from clustrix import plugins, runner
from clustrix.callkey import FunctionKey, settings_part
from clustrix.errors import ConfigError
from clustrix.job import ClusterFuture, Job
from clustrix.log import get_logger
from clustrix.session import ClusterSession
from clustrix.spec import JobSpec
from clustrix.state import JobState, JobStatus
from clustrix.version import __version__

ENVELOPE_KIND = "cached"
MAC_KEY_BYTES = 32
_KEY_NAME = re.compile(r"[0-9a-f]{64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# A miss: None may be a cached value.
_MISS = object()


def default_root() -> Path:
    return Path(platformdirs.user_cache_dir("clustrix")) / "results"


def root_of(setting: bool | Path) -> Path:
    """The directory a ``cache`` setting names: ``True`` the user's default."""
    return default_root() if setting is True else Path(setting)


def mac_key_path() -> Path:
    return Path(platformdirs.user_state_dir("clustrix")) / "cache.key"


def _mac_key() -> bytes:
    """This user's cache key, made on first use; several processes making it at once agree on one."""
    path = mac_key_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(MAC_KEY_BYTES))
        # A hard link creates the key only where none exists yet: whoever links first wins.
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
        draft.unlink()
    key = path.read_bytes()
    if len(key) != MAC_KEY_BYTES:
        raise ConfigError(
            f"the cache key {path} is damaged ({len(key)} bytes, expected {MAC_KEY_BYTES}): remove it; "
            "every cached result is then run again"
        )
    return key


def _private_root(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = root.stat()
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(
            f"cache directory {root}: mode {stat.S_IMODE(info.st_mode):o}, owner uid {info.st_uid}: cached results "
            "must be private to you: use a directory of your own with mode 700 (chmod 700)"
        )
    return root


def function_dir(fn: Any) -> str:
    """The name of a function's directory in the cache: its module and qualified name, made safe."""
    name = f"{getattr(fn, '__module__', None)}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
    return _UNSAFE.sub("_", name)[:150]


@attrs.frozen
class ResultCache:
    """A cache directory opened to read and store entries, with this user's key."""

    root: Path
    mac_key: bytes = attrs.field(repr=False)
    serializer: str

    @classmethod
    def open(cls, setting: bool | Path) -> ResultCache:
        return cls(_private_root(root_of(setting)), _mac_key(), plugins.serializer())

    def get(self, function: str, key: str) -> Any:
        """The value stored for ``key``, or ``_MISS``; an entry not to be trusted is logged and a miss."""
        path = self.root / function / key
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return _MISS
        try:
            header, payload = runner.unpack(data, self.mac_key, ENVELOPE_KIND)
            record = runner.loads(header, payload)
        except runner.EnvelopeError as exc:
            get_logger().warning("cache entry not trusted: the call runs again", path=str(path), problem=exc.problem)
            return _MISS
        except BaseException as exc:  # noqa: BLE001 - unpickling runs the pickle's code: SystemExit too
            get_logger().warning(
                "cache entry could not be unpickled: the call runs again", path=str(path), error=type(exc).__name__
            )
            return _MISS
        if not isinstance(record, dict) or record.get("key") != key:
            get_logger().warning("cache entry holds another call's result: the call runs again", path=str(path))
            return _MISS
        return record["value"]

    def put(self, function: str, key: str, value: Any) -> None:
        """Store ``value`` for ``key``; a value that cannot be stored is logged, the call's future unharmed."""
        directory = self.root / function
        draft = directory / f".{key}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            data = runner.pack(ENVELOPE_KIND, {"key": key, "value": value}, self.mac_key, self.serializer, __version__)
            directory.mkdir(exist_ok=True, mode=0o700)
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(draft, directory / key)
        except Exception as exc:  # noqa: BLE001 - a result not cached is run again next time, never lost now
            with contextlib.suppress(FileNotFoundError):
                draft.unlink()
            get_logger().warning("could not cache a result", path=str(directory / key), error=f"{type(exc).__name__}")


@attrs.frozen
class Entry:
    """One stored result, as ``clustrix cache list`` shows it."""

    function: str
    key: str
    size: int
    modified: float


def entries(root: Path) -> list[Entry]:
    """Every entry under ``root`` (nothing is read or trusted: names, sizes and times only)."""
    found = []
    if not root.is_dir():
        return found
    for function in sorted(os.scandir(root), key=lambda e: e.name):
        if not function.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(function.path):
            if _KEY_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                found.append(Entry(function.name, entry.name, info.st_size, info.st_mtime))
    return found


def clear(root: Path, older_than: float | None = None) -> int:
    """Remove the entries (and drafts a killed client left) not modified for ``older_than`` seconds
    (None: all); returns how many entries went. Only files named as this module names them are touched."""
    cutoff = None if older_than is None else time.time() - older_than
    removed = 0
    if not root.is_dir():
        return 0
    for function in os.scandir(root):
        if not function.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(function.path):
            is_entry = bool(_KEY_NAME.fullmatch(entry.name))
            is_draft = entry.name.startswith(".") and entry.name.endswith(".tmp")
            if not (is_entry or is_draft) or not entry.is_file(follow_symlinks=False):
                continue
            if cutoff is not None and entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += is_entry
        with contextlib.suppress(OSError):
            # Left when something is still in it.
            os.rmdir(function.path)
    return removed


def submit(
    session: ClusterSession,
    specs: Sequence[JobSpec],
    job: Mapping[str, Any],
    chunksize: int | None,
) -> list[ClusterFuture]:
    """Submit ``specs`` through the cache: found calls get resolved futures, the rest go as one batch.

    A call with a future among its arguments is not keyed (its value is not known yet): it is
    submitted and not stored.
    """
    store = ResultCache.open(job["cache"])
    fn = specs[0].fn
    dumps = importlib.import_module(store.serializer).dumps
    function = function_dir(fn)
    by_function = FunctionKey.of(fn, settings_part(specs[0].resources, job), dumps)
    keys = [None if _waits(spec) else by_function.call(spec.args, spec.kwargs) for spec in specs]
    values = [_MISS if key is None else store.get(function, key) for key in keys]
    missing = [spec for spec, value in zip(specs, values, strict=True) if value is _MISS]
    get_logger(cluster=session.config.label).info(
        "cache looked up", function=function, calls=len(specs), found=len(specs) - len(missing), root=str(store.root)
    )
    submitted = iter(session.submit(missing, chunksize) if missing else [])
    futures = []
    for spec, key, value in zip(specs, keys, values, strict=True):
        if value is not _MISS:
            futures.append(_found(session, spec, store.root / function / str(key), value))
        elif key is None:
            futures.append(next(submitted))
        else:
            futures.append(_storing(next(submitted), store, function, key))
    for future in futures:
        future.batch = futures
    return futures


def _waits(spec: JobSpec) -> bool:
    """A future is among the call's arguments."""
    return any(isinstance(value, ClusterFuture) for value in (*spec.args, *spec.kwargs.values()))


def _found(session: ClusterSession, spec: JobSpec, path: Path, value: Any) -> ClusterFuture:
    """A future resolved with a cached value: its job never ran, and printed nothing."""
    status = JobStatus(JobState.COMPLETED, reason=f"found in the cache: {path}")
    job = Job(
        key=path.name,
        job_id=f"cached-{path.name[:12]}",
        directory=str(path),
        spec=spec,
        session=session,
        hmac_key=b"",
        status=status,
    )
    job.stdout_text = job.stderr_text = ""
    future = ClusterFuture(job)
    future.set_result(value)
    return future


def _storing(submitted: ClusterFuture, store: ResultCache, function: str, key: str) -> ClusterFuture:
    """The future the caller gets for a submitted call: resolved once its value is stored.

    concurrent.futures wakes a future's waiters before its done-callbacks run, so storing from a
    callback on the session's own future would let ``result()`` return before the entry exists.
    """
    future = ClusterFuture(submitted.job)

    def settle(done: concurrent.futures.Future) -> None:
        try:
            if done.cancelled():
                future.mark_cancelled()
            elif done.exception() is not None:
                future.set_exception(done.exception())
            else:
                store.put(function, key, done.result())
                future.set_result(done.result())
        except concurrent.futures.InvalidStateError:
            # The caller cancelled this future first: the cancellation stands.
            return

    submitted.add_done_callback(settle)
    return future
