"""The core's own plugin: the ``local`` backend and transport, and the cloudpickle serializer."""

from __future__ import annotations

from collections.abc import Mapping

from clustrix.backend import Backend
from clustrix.backends.process import ProcessBackend
from clustrix.hookspecs import hookimpl
from clustrix.transport import LocalTransport, Transport


class LocalBackend(ProcessBackend):
    """Each job a child process group on this machine: the embedded default."""


@hookimpl
def clustrix_backends() -> Mapping[str, type[Backend]]:
    return {"local": LocalBackend}


@hookimpl
def clustrix_transports() -> Mapping[str, type[Transport]]:
    return {"local": LocalTransport}


@hookimpl(trylast=True)
def clustrix_serializer() -> str:
    return "cloudpickle"
