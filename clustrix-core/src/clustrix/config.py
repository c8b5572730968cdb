"""Profiles: where jobs go and what they ask for by default.

Profiles are TOML tables ``[profiles.NAME]``. They are read from ``$CLUSTRIX_CONFIG`` when
set (that file alone), otherwise from the user's config file and then ``./clustrix.toml``,
a project's profile replacing a user's of the same name. The profile used is the
decorator's ``profile=``, else ``$CLUSTRIX_PROFILE``, else the files' ``default``, else
none at all: the embedded ``local`` backend. Decorator arguments override the profile.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from clustrix import plugins
from clustrix.errors import ConfigError
from clustrix.resources import RESOURCE_KEYS

CLEANUP_POLICIES = ("always", "on_success", "never")


def _cleanup(value: str) -> str:
    if value not in CLEANUP_POLICIES:
        raise ConfigError(f"cleanup={value!r}: expected one of {', '.join(CLEANUP_POLICIES)}")
    return value


def _positive_number(name: str) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{name}={value!r}: expected a number above zero")
        return float(value)

    return convert


def _boolean(name: str) -> Callable[[Any], bool]:
    def convert(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r}: expected true or false")
        return value

    return convert


def _string(name: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name}={value!r}: expected a non-empty string")
        return value

    return convert


@attrs.frozen
class ClusterConfig:
    """Everything that identifies one cluster connection; one session is kept per distinct value."""

    profile: str | None
    backend: str
    transport: str
    host: str | None = None
    user: str | None = None
    workdir: str = ".clustrix/jobs"
    cleanup: str = attrs.field(default="on_success", converter=_cleanup)
    poll_interval: float = 0.05
    poll_interval_max: float = 5.0
    poll_failure_timeout: float = 120.0
    cancel_on_interrupt: bool = True
    max_payload_bytes: int = 256 * 1024**2
    # Backend- and transport-specific keys, already converted; a tuple so the config stays hashable.
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    @property
    def label(self) -> str:
        where = f"{self.user + '@' if self.user else ''}{self.host}" if self.host else "this machine"
        return f"{self.profile or '(no profile)'}: {self.backend} on {where}"


# Keys every profile may hold, with their converters, split by what they describe.
CLUSTER_KEYS: Mapping[str, Callable[[Any], Any]] = {
    "backend": _string("backend"),
    "transport": _string("transport"),
    "host": _string("host"),
    "user": _string("user"),
    "workdir": _string("workdir"),
    "cleanup": _cleanup,
    "poll_interval": _positive_number("poll_interval"),
    "poll_interval_max": _positive_number("poll_interval_max"),
    "poll_failure_timeout": _positive_number("poll_failure_timeout"),
    "cancel_on_interrupt": _boolean("cancel_on_interrupt"),
    "max_payload_bytes": lambda v: int(_positive_number("max_payload_bytes")(v)),
}
JOB_KEYS = RESOURCE_KEYS | {"env", "setup", "python", "name", "parallel"}


@attrs.frozen
class ConfigFiles:
    profiles: Mapping[str, Mapping[str, Any]]
    default: str | None
    sources: tuple[Path, ...]


def config_paths() -> list[Path]:
    explicit = os.environ.get("CLUSTRIX_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"CLUSTRIX_CONFIG={explicit!r}: no such file")
        return [path]
    candidates = [Path(platformdirs.user_config_dir("clustrix")) / "config.toml", Path.cwd() / "clustrix.toml"]
    return [p for p in candidates if p.is_file()]


def load_files() -> ConfigFiles:
    profiles: dict[str, Mapping[str, Any]] = {}
    default = None
    paths = config_paths()
    for path in paths:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        unknown = set(data) - {"default", "profiles"}
        if unknown:
            raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}; known: default, profiles")
        default = data.get("default", default)
        for name, table in data.get("profiles", {}).items():
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: profiles.{name} must be a table")
            profiles[name] = table
    return ConfigFiles(profiles=profiles, default=default, sources=tuple(paths))


def resolve(profile: str | None, overrides: Mapping[str, Any]) -> tuple[ClusterConfig, dict[str, Any]]:
    """Return the cluster to use and the job-level settings, profile first, then overrides."""
    files = load_files()
    name = profile or os.environ.get("CLUSTRIX_PROFILE") or files.default
    if name is not None and name not in files.profiles:
        where = ", ".join(map(str, files.sources)) or "no config file found"
        known = ", ".join(sorted(files.profiles)) or "none"
        raise ConfigError(f"unknown profile {name!r} (known: {known}; read: {where})")
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
    return config, {k: v for k, v in settings.items() if k in JOB_KEYS}
