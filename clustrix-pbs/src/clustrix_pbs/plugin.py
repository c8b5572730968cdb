"""Entry point module (group ``clustrix``): the ``pbs`` backend."""

from __future__ import annotations

from collections.abc import Mapping

from clustrix.backend import Backend
from clustrix.hookspecs import hookimpl
from clustrix_pbs.backend import PbsBackend


@hookimpl
def clustrix_backends() -> Mapping[str, type[Backend]]:
    return {"pbs": PbsBackend}
