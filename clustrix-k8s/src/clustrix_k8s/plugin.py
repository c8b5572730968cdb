"""Entry point module (group ``clustrix``): the ``kubernetes`` backend."""

from __future__ import annotations

from collections.abc import Mapping

from clustrix.backend import Backend
from clustrix.hookspecs import hookimpl
from clustrix_k8s.backend import KubernetesBackend


@hookimpl
def clustrix_backends() -> Mapping[str, type[Backend]]:
    return {"kubernetes": KubernetesBackend}
