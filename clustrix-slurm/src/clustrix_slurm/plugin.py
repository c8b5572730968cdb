"""Entry point module (group ``clustrix``): the ``slurm`` backend."""

from __future__ import annotations

from collections.abc import Mapping

from clustrix.backend import Backend
from clustrix.hookspecs import hookimpl
from clustrix_slurm.backend import SlurmBackend


@hookimpl
def clustrix_backends() -> Mapping[str, type[Backend]]:
    return {"slurm": SlurmBackend}
