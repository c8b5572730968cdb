"""Profiles as plain data: the cluster settings one session is keyed by, and reading the TOML files.

Profiles are TOML tables ``[profiles.NAME]``. They are read from ``$CLUSTRIX_CONFIG`` when
set (that file alone), otherwise from the user's config file and then ``./clustrix.toml``,
a project's profile replacing a user's of the same name. Which profile applies, and
what the plugins make of its keys, is ``clustrix.profiles``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import platformdirs

from clustrix import convert
from clustrix.errors import ConfigError
from clustrix.log import SECRET_KEY
from clustrix.resources import RESOURCE_KEYS

CLEANUP_POLICIES = ("always", "on_success", "never")
_cleanup = convert.choice("cleanup", CLEANUP_POLICIES)


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
    max_result_bytes: int = 4 * 1024**3
    # Backend- and transport-specific keys, already converted; a tuple so the config stays hashable.
    options: tuple[tuple[str, Any], ...] = ()

    def should_clean(self, succeeded: bool) -> bool:
        """Whether the ``cleanup`` policy removes the files of something that ended so."""
        return self.cleanup == "always" or (self.cleanup == "on_success" and succeeded)

    def settings(self) -> dict[str, Any]:
        """The keys that recreate this config over its profile, secrets left out (they stay in the profile)."""
        values = attrs.asdict(self, filter=lambda a, _v: a.name not in ("profile", "options"))
        values.update((k, v) for k, v in self.options if not SECRET_KEY.search(k))
        return values

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    @property
    def label(self) -> str:
        where = f"{self.user + '@' if self.user else ''}{self.host}" if self.host else "this machine"
        return f"{self.profile or '(no profile)'}: {self.backend} on {where}"


# Keys every profile may hold, with their converters, split by what they describe.
CLUSTER_KEYS: Mapping[str, Callable[[Any], Any]] = {
    "backend": convert.string("backend"),
    "transport": convert.string("transport"),
    "host": convert.word("host", r"[A-Za-z0-9_.:%-]+", "a host name or address (letters, digits, _ . : % -)"),
    "user": convert.word("user", r"[A-Za-z0-9_.-]+", "a user name (letters, digits, _ . -)"),
    "workdir": convert.string("workdir"),
    "cleanup": _cleanup,
    "poll_interval": convert.positive_number("poll_interval"),
    "poll_interval_max": convert.positive_number("poll_interval_max"),
    "poll_failure_timeout": convert.positive_number("poll_failure_timeout"),
    "cancel_on_interrupt": convert.boolean("cancel_on_interrupt"),
    "max_payload_bytes": convert.whole_number("max_payload_bytes"),
    "max_result_bytes": convert.whole_number("max_result_bytes"),
}
JOB_KEYS = RESOURCE_KEYS | {
    "env",
    "setup",
    "python",
    "name",
    "parallel",
    "gather",
    "max_requeues",
    "checkpoint_notice",
    "retries",
    "retry_on",
    "cache",
}
# What a project's ./clustrix.toml (a repository someone cloned) may change in a profile of the
# user's own: the resources jobs ask for and how often to poll. Where jobs go and with which
# credentials (host, user, workdir, backend, transport and every plugin key: ports, keys,
# known_hosts, kubeconfig, ...), and what runs as the user there (setup and extra lines, the
# interpreter, the environment) stay the user's; nor may it set the default or add profiles
# (a profile of its own would choose the host that the user's ssh password or 1Password
# references are offered to), nor where results are cached and read back from (a path of the
# user's). Unless the user's file says ``trust_project_profiles = true``.
PROJECT_OVERRIDABLE = (JOB_KEYS - {"env", "setup", "python", "extra", "cache"}) | {
    "cleanup",
    "poll_interval",
    "poll_interval_max",
    "poll_failure_timeout",
    "cancel_on_interrupt",
    "max_payload_bytes",
    "max_result_bytes",
}


@attrs.frozen
class ConfigFiles:
    profiles: Mapping[str, Mapping[str, Any]]
    default: str | None
    sources: tuple[Path, ...]
    # Which file set each key of each profile.
    origins: Mapping[str, Mapping[str, Path]] = attrs.field(factory=dict)
    # What an untrusted project file tried and was not allowed: keys of a user's profile, or a
    # whole profile of its own, by profile name; and the default it named.
    refused: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    refused_default: str | None = None
    # The project file, if one was read (what refused entries came from).
    project: Path | None = None


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
    origins: dict[str, dict[str, Path]] = {}
    refused: dict[str, tuple[str, ...]] = {}
    default = refused_default = None
    trust_project = False
    paths = config_paths()
    project = None if os.environ.get("CLUSTRIX_CONFIG") else Path.cwd() / "clustrix.toml"
    for path in paths:
        is_project = path == project
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        known = {"default", "profiles"} | (set() if is_project else {"trust_project_profiles"})
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
        trust_project = trust_project or convert.boolean("trust_project_profiles")(
            data.get("trust_project_profiles", False)
        )
        if not isinstance(data.get("default", ""), str):
            raise ConfigError(f"{path}: default must be a profile's name, not {data['default']!r}")
        if not isinstance(data.get("profiles", {}), dict):
            raise ConfigError(f"{path}: profiles must be a table of [profiles.NAME] tables")
        untrusted = is_project and not trust_project
        if untrusted and "default" in data:
            refused_default = data["default"]
        else:
            default = data.get("default", default)
        for name, table in data.get("profiles", {}).items():
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: profiles.{name} must be a table")
            if untrusted and name not in profiles:
                refused[name] = tuple(sorted(table))
            elif untrusted:
                refused[name] = tuple(sorted(k for k in table if k not in PROJECT_OVERRIDABLE))
                table = {k: v for k, v in table.items() if k in PROJECT_OVERRIDABLE}
                profiles[name] = {**profiles[name], **table}
                origins[name].update(dict.fromkeys(table, path))
            else:
                profiles[name] = table
                origins[name] = dict.fromkeys(table, path)
    return ConfigFiles(
        profiles=profiles,
        default=default,
        sources=tuple(paths),
        origins=origins,
        refused={name: keys for name, keys in refused.items() if keys},
        refused_default=refused_default,
        project=project if project in paths else None,
    )
