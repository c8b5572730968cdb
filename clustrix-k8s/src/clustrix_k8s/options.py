"""The ``kubernetes`` backend's profile keys: converters that check every value before it reaches a manifest.

Each converter raises ConfigError naming its key and returns a hashable value (the
core keeps one session per distinct configuration): tables become sorted tuples of
pairs, lists of tables become tuples of frozen attrs records. Kubernetes' own syntax
rules (DNS-1123 names, qualified label keys, label values) are checked here, so a
hostile or mistaken value is refused at decoration instead of reaching the API server,
and job names built from function names are sanitised to DNS-1123 labels.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from clustrix import convert
from clustrix.errors import ConfigError

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# An image reference: registry/name:tag@digest characters only, no whitespace or shell.
_IMAGE = r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*"
# Label keys the backend sets itself; a profile may not override or fake them.
RESERVED_PREFIXES = ("clustrix.io/", "app.kubernetes.io/managed-by")
# Where the backend mounts its own volumes in the pod.
RESERVED_MOUNT = "/clustrix"


def is_dns_label(value: str) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_DNS_LABEL.fullmatch(value))


def is_dns_subdomain(value: str) -> bool:
    return isinstance(value, str) and len(value) <= 253 and bool(_DNS_SUBDOMAIN.fullmatch(value))


def sanitise(name: str, limit: int = 30) -> str:
    """A DNS-1123 label fragment from any text: lower case, ``-`` for the rest, at most ``limit`` long."""
    text = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:limit].strip("-")
    return text or "job"


def label_key_problem(key: Any) -> str | None:
    """Why ``key`` is not a Kubernetes label key (optional DNS subdomain prefix, ``/``, name), or None."""
    if not isinstance(key, str) or not key:
        return "a label key must be a non-empty string"
    prefix, _, name = key.rpartition("/")
    if "/" in key and not is_dns_subdomain(prefix):
        return f"prefix {prefix!r} is not a DNS subdomain"
    if len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return f"name {name!r} is not 1-63 letters, digits, - _ . starting and ending alphanumeric"
    return None


def label_value_problem(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        return f"value {value!r} is not at most 63 letters, digits, - _ . starting and ending alphanumeric"
    return None


def _table(name: str, value: Any, what: str) -> Mapping[str, Any]:
    """A table as given (TOML, the decorator) or as this module stores it: (key, value) pairs (the journal)."""
    if isinstance(value, list | tuple) and all(isinstance(p, list | tuple) and len(p) == 2 for p in value):
        value = dict(value)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}={value!r}: expected a table of {what}")
    return value


# Converted values are tuples of (key, value) pairs: hashable (one session per configuration),
# JSON-serialisable (the journal) and accepted again by the same converter (clustrix.attach).
Pairs = tuple[tuple[str, Any], ...]


def _pairs(table: Mapping[str, Any]) -> Pairs:
    return tuple(sorted((k, v) for k, v in table.items() if v is not None))


def label_table(name: str, reserved: bool = True) -> Callable[[Any], tuple[tuple[str, str], ...]]:
    """A table of label key -> value (``labels``, ``node_selector``), each checked as Kubernetes would."""

    def convert_(value: Any) -> tuple[tuple[str, str], ...]:
        value = _table(name, value, "label key = 'value' strings")
        for key, item in value.items():
            problem = label_key_problem(key) or label_value_problem(item)
            if problem:
                raise ConfigError(f"{name}: {key!r}: {problem}")
            if reserved and key.startswith(RESERVED_PREFIXES):
                raise ConfigError(f"{name}: {key!r}: labels under {', '.join(RESERVED_PREFIXES)} are clustrix's own")
        return tuple(sorted(value.items()))

    return convert_


def _fields(name: str, table: Any, allowed: set[str], what: str) -> Mapping[str, Any]:
    table = _table(name, table, what)
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"{name}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(allowed))}")
    return table


def _list(name: str, value: Any, what: str) -> list[Any]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, list | tuple):
        raise ConfigError(f"{name}={value!r}: expected a list of tables, e.g. {what}")
    return list(value)


def records(cls: type, items: tuple[Pairs, ...]) -> tuple[Any, ...]:
    """The attrs records (Toleration, Volume, EnvFrom) of a converted list of tables."""
    return tuple(cls(**dict(item)) for item in items)


@attrs.frozen
class Toleration:
    key: str | None = None
    operator: str = "Equal"
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None

    def manifest(self) -> dict[str, Any]:
        data = {"key": self.key, "operator": self.operator, "value": self.value, "effect": self.effect}
        data["tolerationSeconds"] = self.toleration_seconds
        return {k: v for k, v in data.items() if v is not None}


def tolerations(value: Any) -> tuple[Pairs, ...]:
    result = []
    example = "[{key = 'gpu', operator = 'Exists', effect = 'NoSchedule'}]"
    for item in _list("tolerations", value, example):
        table = _fields("tolerations", item, {"key", "operator", "value", "effect", "toleration_seconds"}, example)
        key, operator = table.get("key"), table.get("operator", "Equal")
        if operator not in ("Equal", "Exists"):
            raise ConfigError(f"tolerations: operator={operator!r}: expected 'Equal' or 'Exists'")
        if key is not None and label_key_problem(key):
            raise ConfigError(f"tolerations: key={key!r}: {label_key_problem(key)}")
        if key is None and operator != "Exists":
            raise ConfigError("tolerations: a toleration without a key must have operator = 'Exists'")
        if "value" in table and (operator == "Exists" or label_value_problem(table["value"])):
            raise ConfigError(f"tolerations: value={table['value']!r}: not allowed with Exists, else a label value")
        effect = table.get("effect")
        if effect not in (None, "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ConfigError(f"tolerations: effect={effect!r}: expected NoSchedule, PreferNoSchedule or NoExecute")
        seconds = table.get("toleration_seconds")
        if seconds is not None:
            convert.whole_number("tolerations: toleration_seconds", minimum=0)(seconds)
        record = Toleration(
            key=key, operator=operator, value=table.get("value"), effect=effect, toleration_seconds=seconds
        )
        result.append(_pairs(attrs.asdict(record)))
    return tuple(result)


@attrs.frozen
class Volume:
    """One volume mounted into every job's container: a PVC, a Secret or a ConfigMap of the namespace."""

    kind: str  # "pvc", "secret" or "config_map"
    source: str
    mount: str
    read_only: bool = False
    sub_path: str | None = None

    def volume(self, name: str) -> dict[str, Any]:
        if self.kind == "pvc":
            return {"name": name, "persistentVolumeClaim": {"claimName": self.source, "readOnly": self.read_only}}
        if self.kind == "secret":
            return {"name": name, "secret": {"secretName": self.source}}
        return {"name": name, "configMap": {"name": self.source}}

    def mount_manifest(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = {"name": name, "mountPath": self.mount, "readOnly": self.read_only}
        if self.sub_path:
            data["subPath"] = self.sub_path
        return data


_SOURCES = ("pvc", "secret", "config_map")


def _mount_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or any(c in value for c in "\0\n\r:"):
        raise ConfigError(f"volumes: mount={value!r}: expected an absolute path in the container")
    clean = posixpath.normpath(value)
    if clean == "/" or clean == RESERVED_MOUNT or clean.startswith(RESERVED_MOUNT + "/") or ".." in value.split("/"):
        raise ConfigError(f"volumes: mount={value!r}: not /, not under {RESERVED_MOUNT} (clustrix's own), no '..'")
    return clean


def volumes(value: Any) -> tuple[Pairs, ...]:
    example = "[{pvc = 'data', mount = '/data'}, {config_map = 'settings', mount = '/etc/app'}]"
    result: list[Volume] = []
    for item in _list("volumes", value, example):
        table = dict(_fields("volumes", item, {*_SOURCES, "kind", "source", "mount", "read_only", "sub_path"}, example))
        if "kind" in table and table["kind"] in _SOURCES and "source" in table:
            # Stored form: kind and source apart.
            table[table.pop("kind")] = table.pop("source")
        kinds = [kind for kind in _SOURCES if kind in table]
        if len(kinds) != 1:
            raise ConfigError(f"volumes: {item!r}: give exactly one of {', '.join(_SOURCES)}")
        kind = kinds[0]
        source = table[kind]
        if not is_dns_subdomain(source):
            raise ConfigError(f"volumes: {kind}={source!r}: expected the name of a {kind} (a DNS-1123 name)")
        if "mount" not in table:
            raise ConfigError(f"volumes: {item!r}: mount = '/path' is required")
        mount = _mount_path(table["mount"])
        if any(mount == other.mount for other in result):
            raise ConfigError(f"volumes: two volumes mounted at {mount}")
        read_only = convert.boolean("volumes: read_only")(table.get("read_only", kind != "pvc"))
        sub_path = table.get("sub_path")
        if sub_path is not None and (
            not isinstance(sub_path, str) or not sub_path or sub_path.startswith("/") or ".." in sub_path.split("/")
        ):
            raise ConfigError(f"volumes: sub_path={sub_path!r}: expected a relative path without '..'")
        result.append(Volume(kind=kind, source=source, mount=mount, read_only=read_only, sub_path=sub_path))
    return tuple(_pairs(attrs.asdict(v)) for v in result)


@attrs.frozen
class EnvFrom:
    """Every key of a Secret or ConfigMap of the namespace as environment variables (optionally prefixed)."""

    kind: str  # "secret" or "config_map"
    source: str
    prefix: str = ""

    def manifest(self) -> dict[str, Any]:
        ref = "secretRef" if self.kind == "secret" else "configMapRef"
        data: dict[str, Any] = {ref: {"name": self.source}}
        if self.prefix:
            data["prefix"] = self.prefix
        return data


def env_from(value: Any) -> tuple[Pairs, ...]:
    example = "[{secret = 'credentials'}, {config_map = 'settings', prefix = 'APP_'}]"
    result = []
    for item in _list("env_from", value, example):
        table = dict(_fields("env_from", item, {"secret", "config_map", "prefix", "kind", "source"}, example))
        if table.get("kind") in ("secret", "config_map") and "source" in table:
            table[table.pop("kind")] = table.pop("source")
        kinds = [kind for kind in ("secret", "config_map") if kind in table]
        if len(kinds) != 1:
            raise ConfigError(f"env_from: {item!r}: give exactly one of secret, config_map")
        source = table[kinds[0]]
        if not is_dns_subdomain(source):
            raise ConfigError(f"env_from: {kinds[0]}={source!r}: expected the name of a {kinds[0]}")
        prefix = table.get("prefix", "")
        if prefix:
            convert.env_name(prefix, "env_from: prefix")
        result.append(_pairs(attrs.asdict(EnvFrom(kind=kinds[0], source=source, prefix=prefix))))
    return tuple(result)


def _dns_label(name: str, what: str) -> Callable[[Any], str]:
    def convert_(value: Any) -> str:
        if not is_dns_label(value):
            raise ConfigError(f"{name}={value!r}: expected {what} (a DNS-1123 label: a-z, 0-9, -, at most 63)")
        return value

    return convert_


def _dns_subdomain(name: str, what: str) -> Callable[[Any], str]:
    def convert_(value: Any) -> str:
        if not is_dns_subdomain(value):
            raise ConfigError(f"{name}={value!r}: expected {what} (a DNS-1123 name: a-z, 0-9, - and .)")
        return value

    return convert_


def _seconds_or_zero(name: str) -> Callable[[Any], float]:
    def convert_(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{name}={value!r}: expected a number of seconds (0 turns it off)")
        return float(value)

    return convert_


def _finished_ttl(value: Any) -> int:
    # Below a minute, the API server could delete a Job before its client has read the pod's log.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or 0 < value < MIN_FINISHED_TTL:
        raise ConfigError(
            f"ttl_after_finished={value!r}: expected whole seconds, at least {MIN_FINISHED_TTL} "
            "(0: finished Jobs stay until deleted)"
        )
    return value


DELETE_POLICIES = ("always", "on_success", "never")
MIN_FINISHED_TTL = 60

OPTIONS: Mapping[str, Callable[[Any], Any]] = {
    "kubeconfig": convert.string("kubeconfig", "the path of a kubeconfig file"),
    "context": convert.string("context", "a context of the kubeconfig"),
    "namespace": _dns_label("namespace", "a namespace"),
    "image": convert.word("image", _IMAGE, "an image reference with Python and cloudpickle, e.g. 'python:3.11'"),
    "image_pull_policy": convert.choice("image_pull_policy", ("Always", "IfNotPresent", "Never")),
    "service_account": _dns_subdomain("service_account", "a service account"),
    "node_selector": label_table("node_selector", reserved=False),
    "tolerations": tolerations,
    "labels": label_table("labels"),
    "volumes": volumes,
    "env_from": env_from,
    "backoff_limit": convert.whole_number("backoff_limit", minimum=0),
    "delete_jobs": convert.choice("delete_jobs", DELETE_POLICIES),
    "cancel_propagation": convert.choice("cancel_propagation", ("Foreground", "Background")),
    "max_result_bytes": convert.whole_number("max_result_bytes", minimum=1024),
    "max_payload_secrets": convert.whole_number("max_payload_secrets", minimum=1, maximum=1000),
    "api_concurrency": convert.whole_number("api_concurrency", minimum=1, maximum=64),
    "container_error_grace": _seconds_or_zero("container_error_grace"),
    "unschedulable_timeout": _seconds_or_zero("unschedulable_timeout"),
    "termination_grace": convert.whole_number("termination_grace", minimum=0),
    "ttl_after_finished": _finished_ttl,
    "ship_serializer": convert.boolean("ship_serializer"),
}
