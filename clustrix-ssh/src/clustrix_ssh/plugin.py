"""The plugin module the ``clustrix`` entry point names: registers the ``ssh`` backend and transport."""

from __future__ import annotations

from collections.abc import Mapping

from clustrix import hookimpl
from clustrix.backend import Backend
from clustrix.transport import Transport
from clustrix_ssh.backend import SSHBackend
from clustrix_ssh.transport import SSHTransport


@hookimpl
def clustrix_backends() -> Mapping[str, type[Backend]]:
    return {"ssh": SSHBackend}


@hookimpl
def clustrix_transports() -> Mapping[str, type[Transport]]:
    return {"ssh": SSHTransport}
