"""Which cluster a call goes to and with what settings: a profile, overridden by the decorator.

The profile used is the decorator's ``profile=``, else ``$CLUSTRIX_PROFILE``, else the
config files' ``default``, else none at all: the embedded ``local`` backend. Every key
is checked here, the plugins' own keys by the plugins' converters, so a bad value is a
ConfigError naming its key before anything is written or submitted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clustrix import convert, plugins, retries
from clustrix.config import CLUSTER_KEYS, JOB_KEYS, ClusterConfig, load_files
from clustrix.errors import ConfigError
from clustrix.log import get_logger
from clustrix.spec import GATHER_MODES


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"env={value!r}: expected a table of NAME = 'value' strings")
    for name, item in value.items():
        convert.env_name(name)
        if not isinstance(item, str):
            raise ConfigError(f"env: {name}={item!r}: values must be strings (they arrive byte-exact as given)")
        if "\0" in item:
            # No environment can hold a NUL: it would be dropped, or cut the value short.
            raise ConfigError(f"env: {name}={item!r}: a value cannot hold a NUL character")
    return dict(value)


def _setup(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"setup={value!r}: expected a list of shell lines, e.g. ['module load python/3.11']")
    return tuple(value)


def _cache(value: Any) -> bool | Path:
    """``cache``: true (the user's cache directory), false, or a directory's path."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str | os.PathLike) and str(value):
        return Path(value).expanduser()
    raise ConfigError(f"cache={value!r}: expected true, false or a directory's path")


# The job-level keys that are not resources (Resources checks its own).
_JOB_CONVERTERS = {
    "env": _env,
    "setup": _setup,
    "python": convert.string("python", "the path of a Python interpreter"),
    "name": convert.string("name"),
    "parallel": convert.boolean("parallel"),
    "max_requeues": convert.whole_number("max_requeues", minimum=0),
    "checkpoint_notice": convert.whole_number("checkpoint_notice"),
    "gather": convert.choice("gather", GATHER_MODES),
    "retries": convert.whole_number("retries", minimum=0),
    "retry_on": retries.exception_types,
    "cache": _cache,
}


def resolve(
    profile: str | None, overrides: Mapping[str, Any], *, default: bool = True
) -> tuple[ClusterConfig, dict[str, Any]]:
    """Return the cluster to use and the job-level settings, profile first, then overrides.

    No ``profile`` means ``$CLUSTRIX_PROFILE`` or the config's default, unless ``default`` is
    false: then none (a journaled job that had none must not go where a later default points).
    """
    files = load_files()
    name = profile or (os.environ.get("CLUSTRIX_PROFILE") or files.default if default else None)
    if name is not None and name not in files.profiles:
        if name in files.refused:
            raise ConfigError(
                f"profile {name!r} is defined only in the project file {files.project}, which may not add "
                "profiles: copy it into your own config, or say trust_project_profiles = true there"
            )
        where = ", ".join(map(str, files.sources)) or "no config file found"
        known = ", ".join(sorted(files.profiles)) or "none"
        raise ConfigError(f"unknown profile {name!r} (known: {known}; read: {where})")
    if name in files.profiles and files.refused.get(name):
        get_logger().warning(
            "project file may not change where this profile's jobs go",
            profile=name,
            ignored=", ".join(files.refused[name]),
            allow="trust_project_profiles = true in your user config",
        )
    settings = dict(files.profiles.get(name, {}) if name else {})
    settings.update({k: v for k, v in overrides.items() if v is not None})
    context = f"profile {name!r}" if name else "the decorator"

    backend_name = settings.get("backend", "local")
    backend_cls = plugins.backend_class(backend_name)
    transport_name = settings.get("transport") or ("ssh" if settings.get("host") else backend_cls.default_transport)
    transport_cls = plugins.transport_class(transport_name)

    plugin_keys = {**backend_cls.options, **transport_cls.options}
    unknown = set(settings) - set(CLUSTER_KEYS) - JOB_KEYS - set(plugin_keys)
    if unknown:
        known = sorted(set(CLUSTER_KEYS) | JOB_KEYS | set(plugin_keys))
        raise ConfigError(
            f"{context}: unknown key(s) {', '.join(sorted(unknown))} for backend {backend_name!r} "
            f"over transport {transport_name!r}; known keys: {', '.join(known)}"
        )
    cluster_values = {k: CLUSTER_KEYS[k](v) for k, v in settings.items() if k in CLUSTER_KEYS}
    cluster_values.update(backend=backend_name, transport=transport_name)
    options = tuple(sorted((k, plugin_keys[k](v)) for k, v in settings.items() if k in plugin_keys))
    config = ClusterConfig(profile=name, options=options, **cluster_values)
    job = {k: _JOB_CONVERTERS[k](v) if k in _JOB_CONVERTERS else v for k, v in settings.items() if k in JOB_KEYS}
    return config, job
