"""The ``ssh`` transport: commands and files on a remote host over one reused SSH connection.

Every transport with the same connection settings shares one fabric ``Connection`` per host;
commands open a channel each on it (channels run concurrently), SFTP calls are serialized on
one SFTP session. A connection that dropped (sshd restarted, network gone) is reopened on the
next use. Host keys are checked against ``known_hosts`` and never silently added.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import select
import shlex
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import attrs
import fabric
import paramiko

from clustrix import convert
from clustrix.config import ClusterConfig
from clustrix.credentials import lookup
from clustrix.errors import BackendUnavailableError, ConfigError, ResultTooLargeError, SubmissionError
from clustrix.log import get_logger
from clustrix.transport import (
    COMMAND_TIMEOUT,
    REMOVE_ATTEMPTS,
    CommandResult,
    FileRead,
    Transport,
    existing_directory,
    too_large,
)

CONNECT_TIMEOUT = 15
# Seconds between keepalive packets, so idle connections survive NAT and firewall timeouts.
KEEPALIVE = 30
HOST_KEY_POLICIES = ("verify", "accept-new")
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"

_JUMP = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>[^@:\s]+)(?::(?P<port>\d+))?$")
_READ_CHUNK = 65536

T = TypeVar("T")


class Secret(str):
    """A string that never shows itself in a repr, so a password cannot reach a log or a traceback."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


_port = convert.whole_number("port", 1, 65535)


def _jump_host(value: Any) -> str:
    if not isinstance(value, str) or not _JUMP.match(value):
        raise ConfigError(f"jump_host={value!r}: expected 'host', 'user@host' or 'user@host:port'")
    match = _JUMP.match(value)
    assert match is not None
    if match["port"] is not None:
        _port(int(match["port"]))
    return value


def _password(value: Any) -> Secret:
    if not isinstance(value, str) or not value:
        raise ConfigError("password: expected a non-empty string")
    return Secret(value)


PASSWORD_VARIABLE = "CLUSTRIX_SSH_PASSWORD"  # noqa: S105 - a variable name, not a password
JUMP_PASSWORD_VARIABLE = "CLUSTRIX_SSH_JUMP_PASSWORD"  # noqa: S105 - a variable name, not a password


def _password_lookup(configured: Secret | None, variable: str = PASSWORD_VARIABLE) -> str | None:
    """The password, when the profile or the environment gives one (literal, op://, or $VARIABLE[_OP])."""
    if configured is None and not (os.environ.get(variable) or os.environ.get(f"{variable}_OP")):
        return None
    return lookup("ssh password", configured=None if configured is None else str(configured), env=[variable])


def fingerprint(key: paramiko.PKey) -> str:
    """The key's SHA256 fingerprint as OpenSSH prints it."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class UnknownHostKeyError(paramiko.SSHException):
    def __init__(self, name: str, key: paramiko.PKey) -> None:
        super().__init__(f"unknown host key for {name}")
        self.name = name
        self.key = key


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown keys, or with accept-new add them to the known_hosts file (changed keys never get here)."""

    def __init__(self, known_hosts: Path, accept_new: bool) -> None:
        self.known_hosts = known_hosts
        self.accept_new = accept_new

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if not self.accept_new:
            raise UnknownHostKeyError(hostname, key)
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Appended, never rewritten: the file's other entries, comments and hashed names stay as they are.
        fd = os.open(self.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)
        get_logger().warning(
            "accepted new host key", host=hostname, key=fingerprint(key), known_hosts=str(self.known_hosts)
        )


@attrs.frozen
class Endpoint:
    """Everything that decides which SSH connection a transport uses; equal endpoints share one."""

    host: str
    port: int
    user: str | None
    identity_file: str | None
    known_hosts: str
    host_key_policy: str
    jump_host: str | None
    password: Secret | None = attrs.field(repr=False)
    # The jump host's own credentials: the target's are never offered to it.
    jump_identity_file: str | None = None
    jump_password: Secret | None = attrs.field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: ClusterConfig) -> Endpoint:
        if not config.host:
            raise ConfigError(f"{config.label}: the ssh transport needs a `host` in the profile")
        return cls(
            host=config.host,
            port=config.option("port", 22),
            user=config.user,
            identity_file=config.option("identity_file"),
            known_hosts=config.option("known_hosts", DEFAULT_KNOWN_HOSTS),
            host_key_policy=config.option("host_key_policy", "verify"),
            jump_host=config.option("jump_host"),
            password=config.option("password"),
            jump_identity_file=config.option("jump_identity_file"),
            jump_password=config.option("jump_password"),
        )

    @property
    def where(self) -> str:
        user = f"{self.user}@" if self.user else ""
        via = f" via {self.jump_host}" if self.jump_host else ""
        return f"{user}{self.host}:{self.port}{via}"


class _Link:
    """One host's SSH connection and SFTP session, opened on first use and reopened after a drop."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._lock = threading.Lock()
        self._sftp_lock = threading.Lock()
        self._connection: fabric.Connection | None = None
        self._log = get_logger(host=endpoint.where)

    def connection(self) -> fabric.Connection:
        """The open connection, connecting (again) when there is none or it dropped."""
        with self._lock:
            conn = self._connection
            if conn is not None and conn.is_connected:
                return conn
            if conn is not None:
                self._log.warning("ssh connection lost, reconnecting")
                _close_quietly(conn)
            self._connection = self._open()
            return self._connection

    def drop(self, conn: fabric.Connection, error: BaseException) -> None:
        """Forget ``conn`` after ``error`` on it, unless another thread has already replaced it."""
        with self._lock:
            if self._connection is conn:
                self._log.warning("ssh connection dropped, reconnecting", error=_words(error))
                self._connection = None
                _close_quietly(conn)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                _close_quietly(self._connection)
                self._connection = None

    def sftp(self, operation: Callable[[paramiko.SFTPClient], T], what: str) -> T:
        """Run an idempotent SFTP operation, once more on a new connection if the connection dropped."""
        for attempt in (1, 2):
            conn = self.connection()
            try:
                with self._sftp_lock:
                    sftp = conn.sftp()
                    # Without a timeout a reply lost with the network would hold the lock forever.
                    sftp.get_channel().settimeout(COMMAND_TIMEOUT)
                    return operation(sftp)
            except FileNotFoundError:
                raise
            except (paramiko.SSHException, EOFError, OSError) as exc:
                if conn.is_connected and not isinstance(exc, TimeoutError):
                    raise BackendUnavailableError(f"{self.endpoint.where}: {what}: {_words(exc)}") from exc
                # Dead, or silent past the timeout (the SFTP session cannot be trusted after a lost reply).
                self.drop(conn, exc)
                if attempt == 2:
                    raise BackendUnavailableError(
                        f"{self.endpoint.where}: {what}: the connection dropped twice: {_words(exc)}"
                    ) from exc
        raise AssertionError("unreachable")

    def open_session(self) -> paramiko.Channel:
        """A new channel; a connection found dead at this point is reopened once (no command ran yet)."""
        for attempt in (1, 2):
            conn = self.connection()
            try:
                return conn.transport.open_session(timeout=CONNECT_TIMEOUT)
            except paramiko.ChannelException as exc:
                # The server answered (e.g. MaxSessions reached): the connection is alive, keep it.
                raise BackendUnavailableError(
                    f"{self.endpoint.where}: the server refused an SSH channel: {_words(exc)}"
                ) from exc
            except (paramiko.SSHException, EOFError, OSError) as exc:
                self.drop(conn, exc)
                if attempt == 2:
                    raise BackendUnavailableError(
                        f"{self.endpoint.where}: cannot open an SSH channel: {_words(exc)}"
                    ) from exc
        raise AssertionError("unreachable")

    def _open(self) -> fabric.Connection:
        e = self.endpoint
        gateway = None
        if e.jump_host:
            match = _JUMP.match(e.jump_host)
            assert match is not None
            gateway = self._new_connection(
                match["host"],
                int(match["port"] or 22),
                match["user"] or e.user,
                None,
                e.jump_identity_file,
                _password_lookup(e.jump_password, JUMP_PASSWORD_VARIABLE),
            )
        conn = self._new_connection(e.host, e.port, e.user, gateway, e.identity_file, _password_lookup(e.password))
        try:
            conn.open()
        except UnknownHostKeyError as exc:
            raise BackendUnavailableError(self._unknown_key_message(exc)) from exc
        except paramiko.BadHostKeyException as exc:
            raise BackendUnavailableError(self._changed_key_message(exc)) from exc
        except paramiko.AuthenticationException as exc:
            raise BackendUnavailableError(
                f"{e.where}: authentication failed as {e.user or 'the local user'}: {_words(exc)}"
            ) from exc
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise BackendUnavailableError(f"{e.where}: cannot connect: {_words(exc)}") from exc
        finally:
            if not conn.is_connected:
                # A refused key leaves paramiko's transport thread running: end it, and the hop's.
                _close_quietly(conn)
        conn.transport.set_keepalive(KEEPALIVE)
        if isinstance(conn.transport.sock, socket.socket):
            # Each request is a few small packets waiting on an answer: Nagle's algorithm would hold
            # them back for the peer's delayed ACK (40 ms on Linux) at every round trip.
            conn.transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._log.info("ssh connected")
        return conn

    def _new_connection(
        self,
        host: str,
        port: int,
        user: str | None,
        gateway: fabric.Connection | None,
        identity_file: str | None,
        password: str | None,
    ) -> fabric.Connection:
        e = self.endpoint
        kwargs: dict[str, Any] = {}
        if identity_file:
            # Like IdentitiesOnly: the named key (and the agent), not every key in ~/.ssh.
            kwargs.update(key_filename=[os.path.expanduser(identity_file)], look_for_keys=False)
        if password:
            kwargs["password"] = password
        conn = fabric.Connection(
            host, user=user, port=port, connect_timeout=CONNECT_TIMEOUT, connect_kwargs=kwargs, gateway=gateway
        )
        known_hosts = Path(os.path.expanduser(e.known_hosts))
        policy = _HostKeyPolicy(known_hosts, e.host_key_policy == "accept-new")
        # fabric's default policy adds unknown keys silently: replaced before anything connects, on this
        # connection and on every hop, ours or one that fabric built from a ProxyJump in ~/.ssh/config.
        hop: object = conn
        while isinstance(hop, fabric.Connection):
            hop.client.set_missing_host_key_policy(policy)
            if known_hosts.is_file():
                hop.client.load_host_keys(str(known_hosts))
            hop = hop.gateway
        return conn

    def _unknown_key_message(self, exc: UnknownHostKeyError) -> str:
        e = self.endpoint
        return (
            f"{e.where}: refusing to connect: the host key of {exc.name} ({fingerprint(exc.key)}) is not in "
            f"{e.known_hosts}. Check the fingerprint with the host's admins, then add it (e.g. "
            f"`ssh-keyscan -p {e.port} {shlex.quote(e.host)} >> {e.known_hosts}`, or connect once with ssh), "
            'or set host_key_policy = "accept-new" in the profile to accept unknown keys on first use'
        )

    def _changed_key_message(self, exc: paramiko.BadHostKeyException) -> str:
        e = self.endpoint
        name = known_hosts_name(exc.hostname, e.port)
        return (
            f"{e.where}: refusing to connect: the host key of {name} has CHANGED: {e.known_hosts} holds "
            f"{fingerprint(exc.expected_key)} but the host offers {fingerprint(exc.key)}. Someone may be "
            "intercepting the connection, or the host was reinstalled; once its admins confirm the new key, "
            f"remove the old entry (`ssh-keygen -R {shlex.quote(name)} -f {e.known_hosts}`) and add the new one. "
            'host_key_policy = "accept-new" never replaces a changed key'
        )


def _close_quietly(conn: fabric.Connection) -> None:
    """Close the connection and every hop it went through."""
    hop: object = conn
    while isinstance(hop, fabric.Connection):
        try:
            hop.close()
            hop.client.close()
        except (paramiko.SSHException, EOFError, OSError):
            pass  # already broken: there is nothing left to release
        hop = hop.gateway


def _words(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


_links: dict[Endpoint, _Link] = {}
_links_lock = threading.Lock()


def _link_for(endpoint: Endpoint) -> _Link:
    with _links_lock:
        link = _links.get(endpoint)
        if link is None:
            link = _links[endpoint] = _Link(endpoint)
        return link


# read_files' command: its arguments are TAIL MAX PATH for each file ("-": none); it prints @none
# (absent), "@big SIZE" (over MAX) or @file, the bytes (the last TAIL of them) in base64, @end.
_READ_FILES = """
while [ $# -ge 3 ]; do
  t=$1 m=$2 f=$3; shift 3
  if [ ! -f "$f" ]; then echo @none; continue; fi
  s=$(wc -c < "$f") || { echo @none; continue; }
  if [ "$m" != - ] && [ "$s" -gt "$m" ]; then echo "@big $s"; continue; fi
  echo @file
  if [ "$t" != - ]; then tail -c "$t" -- "$f"; else cat -- "$f"; fi | base64
  echo @end
done
"""
# A read of many files may carry megabytes each (results, the tails of outputs).
READ_TIMEOUT = 600.0


class SSHTransport(Transport):
    """A remote host over SSH: commands on channels of one shared connection, files over SFTP."""

    options: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "port": _port,
        "identity_file": convert.string("identity_file", "a file path"),
        "known_hosts": convert.string("known_hosts", "a file path"),
        "host_key_policy": convert.choice("host_key_policy", HOST_KEY_POLICIES),
        "jump_host": _jump_host,
        "password": _password,
        "jump_identity_file": convert.string("jump_identity_file", "a file path"),
        "jump_password": _password,
    }

    def __init__(self, config: ClusterConfig) -> None:
        super().__init__(config)
        self.endpoint = Endpoint.from_config(config)
        self._link = _link_for(self.endpoint)
        self._home: str | None = None

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> CommandResult:
        command = command_line(argv, env)
        channel = self._link.open_session()
        deadline = time.monotonic() + timeout
        try:
            if input:
                # A command given input reads it to this EOF before it can end (see below).
                channel.exec_command(command)
                channel.sendall(input)
                channel.shutdown_write()
            else:
                # No EOF of ours on the channel: paramiko sends a shutdown's EOF outside the
                # channel's lock, so for a command that has already ended it can follow the
                # CLOSE its transport thread sent meanwhile, and OpenSSH drops the whole
                # connection for an EOF on a channel it has freed ("ieof packet referred to
                # nonexistent channel"). The command's stdin is /dev/null instead.
                channel.exec_command(f"{command} </dev/null")
            stdout, stderr = _collect(channel, deadline)
            if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError
            returncode = channel.recv_exit_status()
        except TimeoutError as exc:
            raise BackendUnavailableError(
                f"{self.endpoint.where}: `{shlex.join(argv)}` did not answer within {timeout:g} s"
            ) from exc
        except (paramiko.SSHException, EOFError, OSError) as exc:
            # The command may have run: never repeated here, the caller decides.
            raise BackendUnavailableError(
                f"{self.endpoint.where}: lost the connection while running `{shlex.join(argv)}`: {_words(exc)}"
            ) from exc
        finally:
            channel.close()
        return CommandResult(
            argv=tuple(argv),
            returncode=returncode,
            stdout=stdout.decode(errors="replace"),
            stderr=stderr.decode(errors="replace"),
        )

    def home(self) -> str:
        if self._home is None:
            # sftp-server starts in the user's home directory.
            self._home = self._link.sftp(lambda sftp: sftp.normalize("."), "finding the home directory")
        return self._home

    def make_dirs(self, paths: Sequence[str], mode: int = 0o700) -> None:
        # One command for all of them; the umask gives every created level the mode. The last
        # level is made by a plain mkdir, which fails for anything there (a symlink too): exit 17.
        script = (
            f"umask {0o777 & ~mode:03o}\n"
            'for d in "$@"; do\n'
            '  mkdir -p -- "${d%/*}" && mkdir -- "$d" 2>/dev/null && continue\n'
            '  if [ -e "$d" ] || [ -L "$d" ]; then printf "%s\\n" "$d"; exit 17; fi\n'
            '  mkdir -- "$d"; exit 1\n'
            "done"
        )
        result = self.run(["sh", "-c", script, "sh", *paths])
        if result.returncode == 17:
            raise SubmissionError(existing_directory(result.stdout.strip()))
        result.check(BackendUnavailableError, "creating directories")

    def write_files(self, files: Mapping[str, bytes], mode: int = 0o600) -> None:
        """One command for all the files (over SFTP each costs five round trips): a tar archive of
        ``PATH.tmp`` files that tar unpacks (replacing whatever is at a ``.tmp`` name, a planted
        symlink too, never writing through it), then each renamed into place. Writing is idempotent:
        tried once more if the connection dropped."""
        if not files:
            return
        paths = [path if path.startswith("/") else f"{self.home().rstrip('/')}/{path}" for path in files]
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path, data in zip(paths, files.values(), strict=True):
                info = tarfile.TarInfo(f"{path}.tmp".lstrip("/"))
                info.size, info.mode, info.mtime = len(data), mode, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        # The umask leaves exactly ``mode``, whoever runs tar (root keeps the archive's modes anyway).
        script = (
            f"umask {0o777 & ~mode:03o}\n"
            "tar -x -f - -C / --no-same-owner || exit 1\n"
            'for f; do mv -f -- "$f.tmp" "$f" || exit 1; done'
        )
        for attempt in (1, 2):
            try:
                self.run(["sh", "-c", script, "sh", *paths], input=archive.getvalue()).check(
                    BackendUnavailableError, f"writing {len(files)} file(s)"
                )
                return
            except BackendUnavailableError:
                if attempt == 2:
                    raise

    def read_file(self, path: str, tail: int | None = None, max_size: int | None = None, start: int = 0) -> bytes:
        def read(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(path, "rb") as f:
                size = f.stat().st_size or 0
                too_large(path, size, max_size)
                f.seek(max(0, size - tail) if tail is not None else start)
                return f.read()

        return self._link.sftp(read, f"reading {path}")

    def read_files(self, reads: Sequence[FileRead]) -> list[bytes | ResultTooLargeError | None]:
        """One command for all the files (over SFTP each file costs four round trips): each as base64
        between marker lines, which base64 never holds, so no content can be read as framing."""
        if not reads:
            return []
        argv = ["sh", "-c", _READ_FILES, "sh"]
        for read in reads:
            argv += [str(read.tail) if read.tail is not None else "-", str(read.max_size or "-"), read.path]
        answer = self.run(argv, timeout=READ_TIMEOUT).check(BackendUnavailableError, f"reading {len(reads)} file(s)")
        lines = iter(answer.stdout.splitlines())
        found: list[bytes | ResultTooLargeError | None] = []
        for read in reads:
            marker = next(lines, "")
            if marker == "@none":
                found.append(None)
            elif marker.startswith("@big ") and marker[5:].isdigit():
                try:
                    too_large(read.path, int(marker[5:]), read.max_size)
                except ResultTooLargeError as exc:
                    found.append(exc)
                else:
                    raise BackendUnavailableError(f"{self.endpoint.where}: {read.path}: {marker!r} is within its limit")
            elif marker == "@file":
                encoded = list(iter(lines.__next__, "@end"))
                found.append(base64.b64decode("".join(encoded)))
            else:
                raise BackendUnavailableError(f"{self.endpoint.where}: reading {read.path}: unexpected {marker!r}")
        return found

    def remove_trees(self, paths: Sequence[str]) -> None:
        if not paths:
            return
        again = " || ".join(['rm -rf -- "$@" 2>/dev/null'] * (REMOVE_ATTEMPTS - 1) + ['rm -rf -- "$@"'])
        self.run(["sh", "-c", again, "sh", *paths]).check(BackendUnavailableError, f"removing {', '.join(paths)}")

    def close(self) -> None:
        self._link.close()


def command_line(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The remote shell's command line: every argument quoted, ``env`` as a quoted ``env K=V`` prefix."""
    if not argv:
        raise ValueError("empty command")
    assignments = []
    for name, value in (env or {}).items():
        convert.env_name(name)
        assignments.append(f"{name}={value}")
    return shlex.join(["env", *assignments, *argv] if assignments else list(argv))


def _collect(channel: paramiko.Channel, deadline: float) -> tuple[bytes, bytes]:
    """Read stdout and stderr together until the command closes them, so neither can fill up and block it."""
    stdout, stderr = bytearray(), bytearray()
    while True:
        # The channel's fileno becomes readable on data for either stream and on EOF.
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([channel], [], [], remaining)[0]:
            raise TimeoutError
        while channel.recv_ready():
            stdout += channel.recv(_READ_CHUNK)
        while channel.recv_stderr_ready():
            stderr += channel.recv_stderr(_READ_CHUNK)
        if channel.eof_received and not channel.recv_ready() and not channel.recv_stderr_ready():
            return bytes(stdout), bytes(stderr)
