"""Entry point module (group ``clustrix``): the ``sge`` backend."""

from __future__ import annotations

from collections.abc import Mapping

from clustrix.backend import Backend
from clustrix.hookspecs import hookimpl
from clustrix_sge.backend import SgeBackend


@hookimpl
def clustrix_backends() -> Mapping[str, type[Backend]]:
    return {"sge": SgeBackend}
