"""The plugin manager: the core's own plugins plus every ``clustrix`` entry point installed."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import pluggy

from clustrix import builtin, hookspecs, journal
from clustrix.errors import ConfigError

if TYPE_CHECKING:
    from clustrix.backend import Backend
    from clustrix.transport import Transport

ENTRY_POINT_GROUP = "clustrix"


@functools.cache
def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("clustrix")
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name="clustrix.builtin")
    pm.register(journal, name="clustrix.journal")
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


def _collect(results: list, kind: str) -> dict:
    merged: dict = {}
    for provided in results:
        for name, factory in provided.items():
            if name in merged and merged[name] is not factory:
                raise ConfigError(f"two plugins provide the {kind} {name!r}: {merged[name]!r} and {factory!r}")
            merged[name] = factory
    return dict(sorted(merged.items()))


def backends() -> dict[str, type[Backend]]:
    return _collect(plugin_manager().hook.clustrix_backends(), "backend")


def transports() -> dict[str, type[Transport]]:
    return _collect(plugin_manager().hook.clustrix_transports(), "transport")


def backend_class(name: str) -> type[Backend]:
    known = backends()
    if name not in known:
        raise ConfigError(
            f"unknown backend {name!r}; installed: {', '.join(known)}"
            f" (a scheduler's plugin installs with e.g. `pip install clustrix[{name}]`)"
        )
    return known[name]


def transport_class(name: str) -> type[Transport]:
    known = transports()
    if name not in known:
        raise ConfigError(f"unknown transport {name!r}; installed: {', '.join(known)}")
    return known[name]


def serializer() -> str:
    return plugin_manager().hook.clustrix_serializer()
