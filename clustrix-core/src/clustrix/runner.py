"""The far-side job runner, and the envelope format both sides share.

This file is copied into every job directory and run there as
``python runner.py JOBDIR [JOBDIR ...]`` (those calls in order), or into a batch
directory and run as ``python runner.py --worker BATCHDIR WORKER``: a worker that
claims the batch's calls one at a time (see ``work``). A call on several tasks is run
once per task with ``CLUSTRIX_RANK`` set by the backend's launcher; each rank writes its
own result and meta files (``rank_file``), and a call of one task is rank 0. It must
need nothing but the Python standard library and the serializer module named in the
payload (cloudpickle by default): no clustrix install on the cluster. The client imports the same file
for ``pack`` and ``unpack``, so the envelope has exactly one implementation.

Envelope: MAGIC | 4-byte header length | header JSON | payload | HMAC-SHA256.
The MAC covers everything before it and is keyed per job; the key lives only in
the job directory (mode 0700) and in the client's memory, so a payload or
result altered, truncated or swapped on a shared filesystem is refused before
anything is unpickled.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable

MAGIC = b"CLUSTRIX"
FORMAT_VERSION = 1
MAC_SIZE = hashlib.sha256().digest_size

PAYLOAD_FILE = "payload.pkl"
RESULT_FILE = "result.pkl"
META_FILE = "meta.json"
KEY_FILE = "key"
STDOUT_FILE = "stdout"
STDERR_FILE = "stderr"

# A worker batch directory: one file per call in QUEUE (its name the call's index, its content
# the call's job directory); a worker claims a call by renaming it into CLAIMED as
# ``INDEX.WORKER``; when the call has ended it creates ``INDEX.STATE.CODE`` in ENDED; the
# client cancels an unclaimed call by renaming it into CANCELLED, a claimed one by creating
# ``INDEX`` in CANCEL.
QUEUE_DIR, CLAIMED_DIR, ENDED_DIR, CANCELLED_DIR, CANCEL_DIR = "queue", "claimed", "ended", "cancelled", "cancel"
# A call past its time limit (or cancelled) gets this long between TERM and KILL.
CALL_KILL_GRACE = 5
# How often a worker looks for its call's cancel marker and time limit.
CHECK_INTERVAL = 0.25
# The exit code of a call that raised MemoryError, so a worker can tell it from other failures.
MEMORY_ERROR_EXIT = 3
# The exit code of a runner that killed a call at its own time limit (CLUSTRIX_TIME_LIMIT, see
# run_limited), as timeout(1)'s: the backend that set the limit reports the job TIMEOUT.
TIMEOUT_EXIT = 124
# A checkpointable call that saved its state: CHECKPOINT_FILE holds the call to run next, and the
# job ends with this code (EX_TEMPFAIL) for the client to submit it again.
CHECKPOINT_FILE = "checkpoint.pkl"
REQUEUE_EXIT = 75

# Scheduler variables worth recording in meta.json; never the whole environment,
# which may hold secrets.
_ENV_PREFIXES = ("SLURM_", "PBS_", "SGE_", "CLUSTRIX_", "KUBERNETES_SERVICE_")
_ENV_NAMES = ("JOB_ID", "JOB_NAME", "NSLOTS", "NHOSTS", "PE", "PE_HOSTFILE", "QUEUE", "HOSTNAME")


class EnvelopeError(Exception):
    """An envelope that must not be unpickled; ``problem`` is corrupt, tampered or incompatible."""

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem


def rank_file(name: str, rank: int) -> str:
    """The name of rank ``rank``'s copy of a job's ``name`` file: rank 0's is ``name`` itself."""
    if rank == 0:
        return name
    stem, dot, extension = name.rpartition(".")
    return f"{stem}.{rank}{dot}{extension}"


def gathered(values: list, gather: str) -> object:
    """A call's value from its ranks' values: rank 0's, or with ``gather="all"`` all of them in rank order."""
    return values if gather == "all" else values[0]


def python_version() -> str:
    return "{}.{}".format(*sys.version_info[:2])


def pack(kind: str, obj: object, key: bytes, serializer: str, clustrix_version: str) -> bytes:
    payload = importlib.import_module(serializer).dumps(obj)
    header = json.dumps(
        {
            "format": FORMAT_VERSION,
            "kind": kind,
            "python": python_version(),
            "clustrix": clustrix_version,
            "serializer": serializer,
            "size": len(payload),
        },
        sort_keys=True,
    ).encode()
    body = MAGIC + len(header).to_bytes(4, "big") + header + payload
    return body + hmac.new(key, body, hashlib.sha256).digest()


def unpack(data: bytes, key: bytes, kind: str) -> tuple[dict, bytes]:
    """Verify an envelope and return (header, payload bytes); nothing is unpickled here."""
    if len(data) < len(MAGIC) + 4 + MAC_SIZE or not data.startswith(MAGIC):
        raise EnvelopeError("corrupt", f"not a clustrix envelope ({len(data)} bytes)")
    body, mac = data[:-MAC_SIZE], data[-MAC_SIZE:]
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        raise EnvelopeError("tampered", "authentication failed: the file was altered, truncated or swapped")
    start = len(MAGIC) + 4
    header_len = int.from_bytes(body[len(MAGIC) : start], "big")
    header = json.loads(body[start : start + header_len])
    payload = body[start + header_len :]
    if header.get("format") != FORMAT_VERSION:
        raise EnvelopeError("incompatible", f"envelope format {header.get('format')!r}, expected {FORMAT_VERSION}")
    if header.get("kind") != kind:
        raise EnvelopeError("corrupt", "envelope holds a {!r}, expected a {!r}".format(header.get("kind"), kind))
    if header.get("size") != len(payload):
        raise EnvelopeError("corrupt", f"payload is {len(payload)} bytes, header says {header.get('size')!r}")
    return header, payload


def loads(header: dict, payload: bytes) -> object:
    return importlib.import_module(header["serializer"]).loads(payload)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _write_atomic(path: str, data: bytes) -> None:
    """Readers see the whole file or none. Not fsynced: close() is what makes it visible on a shared
    file system, and a file torn by a node's crash fails its MAC instead of passing as a result."""
    tmp = path + ".tmp"
    # Created afresh, never through what is there: a planted symlink would send the bytes elsewhere.
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def fill_upstream_values(call: dict, read: Callable[[str], bytes] = _read_bytes) -> None:
    """Put the values of the jobs this call depends on where their futures were among its arguments.

    ``read`` reads an upstream's result file: here, or (a backend whose jobs cannot read each
    other's files) on the client, which then sends the call with its values filled in.
    """
    args = list(call["args"])
    for position, (directory, key_hex, ranks, gather) in call.pop("upstream", {}).items():
        values = []
        for rank in range(ranks):
            header, payload = unpack(
                read(os.path.join(directory, rank_file(RESULT_FILE, rank))), bytes.fromhex(key_hex), "result"
            )
            record = loads(header, payload)
            if not record["ok"]:
                raise RuntimeError(f"the job in {directory} this call depends on raised {record['type']} (rank {rank})")
            values.append(record["value"])
        if isinstance(position, int):
            args[position] = gathered(values, gather)
        else:
            call["kwargs"][position] = gathered(values, gather)
    call["args"] = tuple(args)


def _describe(exc: BaseException, tb) -> dict:
    """The parts of an exception the client needs, each usable without the others."""
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, tb)),
    }


def _pickled(exc: BaseException, serializer: str) -> bytes | None:
    try:
        return importlib.import_module(serializer).dumps(exc)
    except Exception:  # noqa: BLE001 - the type name and message still travel
        return None


def _chain(exc: BaseException, serializer: str) -> list:
    """The exceptions ``exc`` was raised from or during, each pickled on its own (pickling drops the links)."""
    links, seen, current = [], {id(exc)}, exc
    while True:
        if current.__cause__ is not None:
            relation, current = "cause", current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            relation, current = "context", current.__context__
        else:
            return links
        if id(current) in seen:
            return links
        seen.add(id(current))
        links.append(
            {
                "relation": relation,
                "type": f"{type(current).__module__}.{type(current).__qualname__}",
                "message": str(current),
                "exception": _pickled(current, serializer),
            }
        )


class _Redirected:
    """Send fds 1 and 2 to the job's own files for one call, so output stays per call even in a chunk."""

    def __init__(self, jobdir: str) -> None:
        self.jobdir = jobdir

    def __enter__(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2))
        for fd, name in ((1, STDOUT_FILE), (2, STDERR_FILE)):
            target = os.open(os.path.join(self.jobdir, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(target, fd)
            os.close(target)

    def __exit__(self, *exc_info) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in zip((1, 2), self.saved, strict=False):
            os.dup2(saved, fd)
            os.close(saved)


class Checkpointed(BaseException):
    """Raised into a checkpointable call once it saved the call to resume with; ends the run."""


class _Checkpointing:
    """While a checkpointable call runs: at its notice time, or on SIGTERM, checkpoint it.

    A call is checkpointable when its function has a ``checkpoint`` method and the client
    granted it requeues (``call["requeue"]``: how many are ``left``, and ``at``: seconds
    after the job's start, ``CLUSTRIX_JOB_START``, to checkpoint before its time limit).
    The runner's own timer gives the notice, so it works the same under every scheduler;
    SIGTERM is how schedulers announce preemption and the end of a job. ``checkpoint(*args,
    **kwargs)`` is called with the call's arguments in the middle of the call and returns
    the callable to resume with (called with the same arguments), or None to let the job
    run on to its end.
    """

    def __init__(self, call: dict, jobdir: str, key: bytes, header: dict) -> None:
        self.call, self.jobdir, self.key, self.header = call, jobdir, key, header
        grant = call.get("requeue") or {}
        self.left = int(grant.get("left", 0))
        self.at = grant.get("at")
        self.armed = self.left > 0 and callable(getattr(call["fn"], "checkpoint", None))
        self.saved: dict = {}

    def __enter__(self) -> None:
        if not self.armed:
            return
        self.saved = {signum: signal.signal(signum, self._fire) for signum in (signal.SIGTERM, signal.SIGALRM)}
        if self.at is not None:
            start = float(os.environ.get("CLUSTRIX_JOB_START") or time.time())
            signal.setitimer(signal.ITIMER_REAL, max(start + self.at - time.time(), 0.001))

    def __exit__(self, *exc_info: object) -> None:
        self._disarm()

    def _disarm(self) -> None:
        self.armed = False
        if self.saved:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for signum, handler in self.saved.items():
                signal.signal(signum, handler)
            self.saved = {}

    def _fire(self, signum: int, _frame: object) -> None:
        if not self.armed:
            return  # the call has just returned
        self._disarm()
        call = self.call
        resume = call["fn"].checkpoint(*call["args"], **call["kwargs"])
        if resume is None:
            if signum == signal.SIGTERM:
                os.kill(os.getpid(), signal.SIGTERM)  # as if no checkpoint had been asked for
            return
        following = {**call, "fn": resume, "upstream": {}, "requeue": {**call["requeue"], "left": self.left - 1}}
        data = pack("call", following, self.key, self.header["serializer"], self.header["clustrix"])
        _write_atomic(os.path.join(self.jobdir, CHECKPOINT_FILE), data)
        raise Checkpointed(signal.Signals(signum).name)


def _meta(rank: int, start: str) -> dict:
    """The start of a call's record of where and how it ran (``meta.json``)."""
    return {
        "rank": rank,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "user": _user(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "cwd": os.getcwd(),
        "start": start,
        "env": {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES) or k in _ENV_NAMES},
    }


def run_job(jobdir: str, rank: int = 0) -> int:
    """Run the call staged in ``jobdir`` (or the one it checkpointed) as rank ``rank``; write that
    rank's result and meta.

    Returns 0 when the call returned, MEMORY_ERROR_EXIT when it raised MemoryError,
    REQUEUE_EXIT when it checkpointed, else 1.
    """
    meta = _meta(rank, _now())
    with open(os.path.join(jobdir, KEY_FILE), "rb") as f:
        key = bytes.fromhex(f.read().decode())
    header = {"serializer": "pickle", "clustrix": "unknown"}
    resumed = os.path.exists(os.path.join(jobdir, CHECKPOINT_FILE))
    # A result of an earlier run (one that checkpointed) must not stand for this one.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(jobdir, rank_file(RESULT_FILE, rank)))
    try:
        with open(os.path.join(jobdir, CHECKPOINT_FILE if resumed else PAYLOAD_FILE), "rb") as f:
            header, payload = unpack(f.read(), key, "call")
        if header["python"] != python_version():
            raise RuntimeError(
                "the payload was pickled by Python {} but this job runs Python {} ({})".format(
                    header["python"], python_version(), sys.executable
                )
            )
        call = loads(header, payload)
        fill_upstream_values(call)
    except BaseException as exc:  # noqa: BLE001 - every load failure must reach the client
        outcome = {"ok": False, "phase": "load", **_describe(exc, exc.__traceback__)}
        code = 1
    else:
        with _Redirected(jobdir):
            try:
                with _Checkpointing(call, jobdir, key, header):
                    value = call["fn"](*call["args"], **call["kwargs"])
            except Checkpointed as stop:
                message = f"checkpointed on {stop}; {call['requeue']['left'] - 1} requeues left"
                outcome = {"ok": False, "phase": "checkpoint", "type": "", "message": message, "traceback": ""}
                code = REQUEUE_EXIT
            except BaseException as exc:  # noqa: BLE001 - the user's exception is the result
                # Skip this frame so the traceback starts in the user's code.
                outcome = {"ok": False, "phase": "call", **_describe(exc, exc.__traceback__.tb_next)}
                # The job's own log shows the failure too, for `clustrix logs` and the scheduler's files.
                sys.stderr.write(outcome["traceback"])
                outcome["exception"] = _pickled(exc, header["serializer"])
                outcome["chain"] = _chain(exc, header["serializer"])
                code = MEMORY_ERROR_EXIT if isinstance(exc, MemoryError) else 1
            else:
                outcome = {"ok": True, "value": value}
                code = 0
    meta["end"] = _now()
    meta["limits"] = _limits()
    meta["resumed"] = resumed
    meta["outcome"] = {0: "returned", REQUEUE_EXIT: "checkpointed"}.get(code, "raised")
    if outcome.get("type"):
        meta["error"] = outcome["type"]
    try:
        result = pack("result", outcome, key, header["serializer"], header["clustrix"])
    except BaseException as exc:  # noqa: BLE001 - an unpicklable return value is an error, not a crash
        outcome = {"ok": False, "phase": "result", **_describe(exc, exc.__traceback__)}
        result = pack("result", outcome, key, header["serializer"], header["clustrix"])
        meta["outcome"] = "unpicklable result"
        meta["error"] = outcome["type"]
        code = 1
    _write_atomic(os.path.join(jobdir, rank_file(RESULT_FILE, rank)), result)
    _write_atomic(os.path.join(jobdir, rank_file(META_FILE, rank)), json.dumps(meta, indent=1).encode())
    return code


def work(batch: str, worker: str) -> None:
    """Claim the batch's calls one at a time and run each in the worker's call process, until none is left.

    Nothing listens and nothing talks back: a rename claims a call (exactly one worker's
    succeeds, on NFS too), files record how it ended. A worker stops early when the next
    call's time limit (``CLUSTRIX_CALL_TIME`` seconds) no longer fits in what is left of its
    own (``CLUSTRIX_WORKER_TIME``), so the scheduler never kills it inside a call. The calls
    run one after another in a child process (``_CallProcess``) in a process group of its
    own: what a call imports stays imported for the next, and a call over its limit,
    cancelled, out of memory or crashing fails alone and takes only that child with it.
    """
    call_time = int(os.environ.get("CLUSTRIX_CALL_TIME") or 0)
    allocation = int(os.environ.get("CLUSTRIX_WORKER_TIME") or 0)
    started = time.monotonic()
    global _prctl
    _prctl = _load_prctl()
    # Loaded once for every call process: the default serializer, and what each call's record uses.
    for module in ("cloudpickle", "resource", "pwd"):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    # A worker told to end (cancel, its scheduler's limit) takes its call process with it instead
    # of leaving a call running unwatched.
    signal.signal(signal.SIGTERM, _end_worker)
    waiting: list[str] = []
    calls: _CallProcess | None = None
    try:
        while not (call_time and allocation and time.monotonic() - started + call_time > allocation):
            claimed = _claim(batch, worker, waiting)
            if claimed is None:
                return
            index, jobdir = claimed
            if calls is None or not calls.alive():
                calls = _CallProcess()
            deadline = time.monotonic() + call_time if call_time else None
            ended = calls.run(jobdir, deadline, os.path.join(batch, CANCEL_DIR, index))
            if not calls.alive():
                calls = None
            try:
                os.close(os.open(os.path.join(batch, ENDED_DIR, f"{index}.{ended}"), os.O_WRONLY | os.O_CREAT, 0o600))
            except OSError:
                return  # the batch directory is gone: the client stopped waiting for it
    finally:
        if calls is not None:
            calls.close()


_running_call: int | None = None


def _end_worker(signum: int, _frame: object) -> None:
    if _running_call is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(_running_call, signal.SIGKILL)
    os._exit(128 + signum)


def _claim(batch: str, worker: str, waiting: list[str]) -> tuple[str, str] | None:
    """The index and job directory of the next unclaimed call, now this worker's; None when none is left."""
    queue = os.path.join(batch, QUEUE_DIR)
    for _ in range(2):
        while waiting:
            index = waiting.pop()
            mine = os.path.join(batch, CLAIMED_DIR, f"{index}.{worker}")
            try:
                os.rename(os.path.join(queue, index), mine)
            except FileNotFoundError:
                continue  # another worker's, or cancelled
            with open(mine) as f:
                return index, f.read().strip()
        try:
            waiting[:] = sorted(os.listdir(queue), reverse=True)
        except OSError:
            return None
    return None


def _ended_as(code: int) -> str:
    """How a call whose process gave exit code ``code`` (or replied it) ended, as ``STATE.CODE``."""
    return f"{ {0: 'COMPLETED', MEMORY_ERROR_EXIT: 'OUT_OF_MEMORY'}.get(code, 'FAILED') }.{code}"


class _CallProcess:
    """A worker's child that runs calls one after another: sent a job directory on a pipe, it
    runs ``run_job`` on it and replies its code. Forking once per call cost each call
    milliseconds and made it import again what the call before it had imported.

    It leads a process group of its own, so a kill reaches whatever a call started; after a
    call that raised MemoryError it is replaced (its heap may be what was short).
    """

    def __init__(self) -> None:
        requests, self._requests = os.pipe()
        self._replies, replies = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(self._requests)
                os.close(self._replies)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.setpgid(0, 0)
                _die_with_parent()
                _serve_calls(requests, replies)
                code = 0
            finally:
                os._exit(code)
        os.close(requests)
        os.close(replies)
        # Both sides set the group, so a kill right after the fork cannot miss it.
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        self.pid = pid
        self._status: int | None = None
        global _running_call
        _running_call = pid
        # A pidfd is readable the moment the process ends (Linux 5.3+), which a reply pipe is not
        # when something the call forked still holds it.
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def alive(self) -> bool:
        if self._status is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self._ended(status)
        return self._status is None

    def run(self, jobdir: str, deadline: float | None, cancel_marker: str) -> str:
        """Run the call staged in ``jobdir``; how it ended, as ``STATE.CODE`` (CODE ``_`` when killed)."""
        oom_before = _oom_kills()
        # A process that ended meanwhile cannot read it: its status, read below, says how.
        with contextlib.suppress(BrokenPipeError):
            os.write(self._requests, jobdir.encode() + b"\n")
        waitables = [self._replies] + ([self._pidfd] if self._pidfd is not None else [])
        while True:
            readable, _, _ = select.select(waitables, [], [], CHECK_INTERVAL)
            if self._replies in readable:
                reply = os.read(self._replies, 64)
                if reply:
                    code = int(reply)
                    if code == MEMORY_ERROR_EXIT:
                        self.close()
                    return _ended_as(code)
                waitables.remove(self._replies)  # ended: the pidfd or waitpid says how
            if not self.alive():
                return self._died(oom_before)
            if os.path.exists(cancel_marker):
                self._kill()
                return "CANCELLED._"
            if deadline is not None and time.monotonic() >= deadline:
                self._kill()
                return "TIMEOUT._"

    def _died(self, oom_before: int) -> str:
        """The process ended during a call: how the call ended."""
        status = self._status or 0
        if os.WIFSIGNALED(status):
            killed_by = os.WTERMSIG(status)
            if killed_by == signal.SIGTERM:
                # Not this worker's (its own kills return elsewhere): the scheduler is ending the
                # whole job (cancel, its limit), whose TERM reaches every process, the call's maybe
                # first. The worker ends as it would on its own TERM: the call's end is the job's.
                _end_worker(signal.SIGTERM, None)
            memory = killed_by == signal.SIGKILL and _oom_kills() > oom_before
            return f"{'OUT_OF_MEMORY' if memory else 'FAILED'}.{-killed_by}"
        return _ended_as(os.WEXITSTATUS(status))

    def _kill(self) -> None:
        self._ended(_kill_child(self.pid))

    def close(self) -> None:
        """No more calls: the process reads the end of its requests and exits."""
        if self._status is None:
            os.close(self._requests)
            self._requests = -1
            self._ended(os.waitpid(self.pid, 0)[1])

    def _ended(self, status: int) -> None:
        global _running_call
        self._status = status
        _running_call = None
        for fd in (self._requests, self._replies, self._pidfd if self._pidfd is not None else -1):
            if fd >= 0:
                os.close(fd)
        self._requests = self._replies = -1
        self._pidfd = None


def _serve_calls(requests: int, replies: int) -> None:
    """The call process: run each job directory read from ``requests``; reply each call's code."""
    with os.fdopen(requests, "rb") as lines:
        for line in lines:
            os.write(replies, b"%d\n" % run_job(line.decode().rstrip("\n")))


def _supervise(jobdir: str, rank: int, deadline: float) -> tuple[str | None, int]:
    """Run ``run_job(jobdir, rank)`` in a child process group until it ends, or kill it at ``deadline``
    (``time.monotonic()``).

    Returns (``"TIMEOUT"`` when this killed it, else None; its wait status).
    """
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.setpgid(0, 0)
            _die_with_parent()
            code = run_job(jobdir, rank)
        finally:
            os._exit(code)
    # Both sides set the group, so a kill right after the fork cannot miss it.
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    global _running_call
    _running_call = pid
    # A pidfd is readable the moment the call ends (Linux 5.3+): no call waits on a sleep.
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    delay = 0.001
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return None, status
            if time.monotonic() >= deadline:
                return "TIMEOUT", _kill_child(pid)
            if pidfd is not None:
                select.select([pidfd], [], [], CHECK_INTERVAL)
            else:
                time.sleep(delay)
                delay = min(delay * 2, CHECK_INTERVAL)
    finally:
        _running_call = None
        if pidfd is not None:
            os.close(pidfd)


def _kill_child(pid: int) -> int:
    """TERM the call's process group, KILL what is left of it after the grace; its wait status."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    end = time.monotonic() + CALL_KILL_GRACE
    done, status = 0, 0
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if not done:
        status = os.waitpid(pid, 0)[1]
    return status


def _die_with_parent() -> None:
    """A call whose worker is killed outright (SIGKILL, no handler runs) is killed too (Linux)."""
    if _prctl is not None:
        _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _load_prctl():
    """libc's prctl, found once in the worker: loading ctypes in every call's child costs milliseconds."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError, ImportError):
        return None


_prctl = None


def _oom_kills() -> int:
    """How many processes the kernel has killed for memory in this process's memory cgroup, else 0.

    cgroup v2 counts them in ``memory.events``, v1 (the memory controller's own hierarchy) in
    ``memory.oom_control``.
    """
    try:
        with open("/proc/self/cgroup") as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
        v1 = next((path for _, controllers, path in lines if "memory" in controllers.split(",")), None)
        if v1 is not None:
            where = f"/sys/fs/cgroup/memory{v1}/memory.oom_control"
        else:
            path = next(path for number, controllers, path in lines if number == "0" and not controllers)
            where = f"/sys/fs/cgroup{path}/memory.events"
        with open(where) as f:
            return next(int(line.split()[1]) for line in f if line.startswith("oom_kill "))
    except (OSError, StopIteration, ValueError, IndexError):
        return 0


def _limits() -> dict:
    """What this process was actually given and used, as the operating system sees it."""
    limits: dict = {}
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        limits["address_space"] = None if soft == resource.RLIM_INFINITY else soft
        # ru_maxrss is in KiB on Linux; children covers worker processes (pmap) that have ended.
        usage = max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        )
        limits["peak_rss"] = usage * 1024
    except ImportError:
        pass
    if hasattr(os, "sched_getaffinity"):
        limits["cpus"] = len(os.sched_getaffinity(0))
    return limits


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"] and len(argv) == 3:
        work(argv[1], argv[2])
        return 0
    if not argv or argv[0].startswith("-"):
        print("usage: runner.py JOBDIR [JOBDIR ...] | runner.py --worker BATCHDIR WORKER", file=sys.stderr)
        return 2
    # Runs the chunk's calls in order; one failed call does not stop the others.
    rank = int(os.environ.get("CLUSTRIX_RANK") or 0)
    limit = int(os.environ.get("CLUSTRIX_TIME_LIMIT") or 0)
    codes = run_limited(argv, rank, limit) if limit else [run_job(jobdir, rank) for jobdir in argv]
    if TIMEOUT_EXIT in codes:
        return TIMEOUT_EXIT
    return 0 if not any(codes) else 1


def run_limited(jobdirs: list[str], rank: int, limit: int) -> list[int]:
    """Run the calls of ``jobdirs`` in order, all within ``limit`` seconds of now: the call running
    at the limit is killed (TERM, then KILL after CALL_KILL_GRACE), and it and the calls after it
    are recorded as timed out (their meta's ``outcome``, and TIMEOUT_EXIT as their code).

    The limit is the runner's own, not the scheduler's: it holds to the second where a
    scheduler rounds limits up (Slurm: whole minutes) or counts pending time (Kubernetes).
    A checkpointable call told to end this way checkpoints as on a scheduler's TERM.
    """
    global _prctl
    _prctl = _load_prctl()
    deadline = time.monotonic() + limit
    # The scheduler's TERM (cancel, its own limit) is passed on to the call, which may checkpoint
    # on it; this process waits for the call to end rather than dying first and taking it along.
    signal.signal(signal.SIGTERM, _pass_term_on)
    codes = []
    for jobdir in jobdirs:
        started = _now()
        if time.monotonic() < deadline:
            killed, status = _supervise(jobdir, rank, deadline)
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
        else:
            # Never started: a result of an earlier run (one that checkpointed) must not stand for it.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(jobdir, rank_file(RESULT_FILE, rank)))
            killed, code = "TIMEOUT", TIMEOUT_EXIT
        if killed == "TIMEOUT" and code != REQUEUE_EXIT:
            meta = {**_meta(rank, started), "end": _now(), "outcome": "timed out", "time_limit": limit}
            _write_atomic(os.path.join(jobdir, rank_file(META_FILE, rank)), json.dumps(meta, indent=1).encode())
            code = TIMEOUT_EXIT
        codes.append(code)
        if _told_to_end:
            break  # the job is ending: the calls after this one are not started
    return codes


_told_to_end = False


def _pass_term_on(_signum: int, _frame: object) -> None:
    global _told_to_end
    _told_to_end = True
    if _running_call is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(_running_call, signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
