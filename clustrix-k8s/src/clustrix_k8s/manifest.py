"""What the ``kubernetes`` backend sends to the API server for one call: its Secret(s) and its batch/v1 Job.

Pure functions of the call's spec and the profile's settings, so a golden test shows
exactly what a fixed spec becomes. The payload, the job's HMAC key, ``runner.py`` and
``emit.py`` travel in Secrets (split past Kubernetes' 1 MiB object limit) projected
into one read-only directory; the container copies them to a writable emptyDir, runs
the setup lines and the runner, then ``emit.py`` frames the job's files onto its log.
Environment values go in the container's ``env`` list, never through a shell, with
``$`` doubled so Kubernetes' ``$(VAR)`` expansion leaves them byte-exact.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from clustrix.config import ClusterConfig
from clustrix.errors import ConfigError, SerializationError
from clustrix.spec import JobSpec
from clustrix_k8s.options import RESERVED_MOUNT, EnvFrom, Toleration, Volume, records, sanitise

MANAGED_BY = "app.kubernetes.io/managed-by"
CLIENT_LABEL = "clustrix.io/client"
JOB_LABEL = "clustrix.io/job"
KEY_ANNOTATION = "clustrix.io/key"
FUNCTION_ANNOTATION = "clustrix.io/function"
CONTAINER = "job"

IN_DIR = f"{RESERVED_MOUNT}/in"
WORK_DIR = f"{RESERVED_MOUNT}/work"
# Kubernetes refuses a Secret whose data is over 1 MiB: the first holds the small files and as much
# payload as fits beside them, each other one a part of this size.
SECRET_LIMIT = 1024 * 1024
PAYLOAD_PART = SECRET_LIMIT - 1024
PAYLOAD_PREFIX = "payload."
# The client's serializer module (cloudpickle), zipped: the pod imports it from there first.
SERIALIZER_ZIP = "serializer.zip"
SERIALIZER_LIMIT = 512 * 1024


@attrs.frozen
class Settings:
    """The profile's keys for this backend, with their defaults."""

    namespace: str = "default"
    image: str | None = None
    image_pull_policy: str | None = None
    service_account: str | None = None
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    volumes: tuple[Volume, ...] = ()
    env_from: tuple[EnvFrom, ...] = ()
    backoff_limit: int = 0
    delete_jobs: str = "always"
    cancel_propagation: str = "Foreground"
    max_result_bytes: int = 6 * 1024**2
    max_payload_secrets: int = 16
    api_concurrency: int = 8
    container_error_grace: float = 30.0
    unschedulable_timeout: float = 0.0
    termination_grace: int = 10
    ship_serializer: bool = True
    # A day: the API server then deletes a finished Job (its pods and Secrets with it) that no
    # client collected, e.g. because its client died and nobody attached.
    ttl_after_finished: int = 86400

    @classmethod
    def from_config(cls, config: ClusterConfig, namespace: str) -> Settings:
        known = {field.name for field in attrs.fields(cls)}
        values = {k: v for k, v in config.options if k in known}
        values.setdefault("namespace", namespace)
        for key, record in (("tolerations", Toleration), ("volumes", Volume), ("env_from", EnvFrom)):
            values[key] = records(record, values.get(key, ()))
        return cls(**values)


def job_name(spec: JobSpec, key: str) -> str:
    """The Job's name: the function's name as a DNS-1123 label fragment, then 12 hex digits of the key."""
    return f"{sanitise(spec.name)}-{key[:12]}"


def selector(client_id: str) -> str:
    """The label selector of every Job and pod one backend instance created (its watch's selector)."""
    return f"{MANAGED_BY}=clustrix,{CLIENT_LABEL}={client_id}"


def labels(settings: Settings, client_id: str, name: str) -> dict[str, str]:
    return {**dict(settings.labels), MANAGED_BY: "clustrix", CLIENT_LABEL: client_id, JOB_LABEL: name}


def _escape(value: str) -> str:
    """An env value Kubernetes passes through unchanged: ``$$`` is its escape for ``$``."""
    if "\0" in value:
        raise ConfigError("env: a value holds a NUL byte, which no process environment can carry")
    return value.replace("$", "$$")


def secrets(
    name: str, namespace: str, job_labels: Mapping[str, str], files: Mapping[str, bytes], max_secrets: int
) -> list[dict[str, Any]]:
    """The Secrets that carry a call's files; the payload is split into parts across as many as it needs."""
    payload = files["payload.pkl"]
    small = {k: v for k, v in files.items() if k != "payload.pkl"}
    first = max(0, PAYLOAD_PART - sum(map(len, small.values())))
    rest = payload[first:]
    parts = [payload[:first], *(rest[i : i + PAYLOAD_PART] for i in range(0, len(rest), PAYLOAD_PART))]
    if len(parts) > max_secrets:
        raise SerializationError(
            f"the call's payload is {len(payload)} bytes: it needs {len(parts)} Secrets of at most 1 MiB "
            f"(Kubernetes' object size limit), over max_payload_secrets={max_secrets}; pass large data "
            "through a volume instead. Nothing was submitted"
        )
    result = []
    for index, part in enumerate(parts):
        data = {f"{PAYLOAD_PREFIX}{index:03d}": part}
        if index == 0:
            data.update(small)
        if sum(map(len, data.values())) > SECRET_LIMIT:
            raise SerializationError(f"the job's files do not fit in a Secret ({SECRET_LIMIT} bytes)")
        result.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret_name(name, index), "namespace": namespace, "labels": dict(job_labels)},
                "type": "Opaque",
                "data": {k: base64.b64encode(v).decode("ascii") for k, v in sorted(data.items())},
            }
        )
    return result


def secret_name(name: str, index: int) -> str:
    return f"{name}-in" if index == 0 else f"{name}-in-{index}"


def script(spec: JobSpec, key: str, max_result_bytes: int, serializer: bool = False) -> str:
    """The container's ``sh -c`` script: copy the inputs, setup lines, the runner, then the frames."""
    python = shlex.quote(spec.python or "python3")
    lines = [
        f"mkdir -p {WORK_DIR} && cp {IN_DIR}/runner.py {IN_DIR}/emit.py {IN_DIR}/key {WORK_DIR}/ "
        f"&& cat {IN_DIR}/{PAYLOAD_PREFIX}* > {WORK_DIR}/payload.pkl || exit 120",
    ]
    if serializer:
        lines.append(f"export PYTHONPATH={IN_DIR}/{SERIALIZER_ZIP}${{PYTHONPATH:+:$PYTHONPATH}}")
    lines += [
        *spec.setup,
        # In the background so that the TERM of a cancel or a deadline reaches Python: a shell
        # that is the container's pid 1 would ignore it.
        f"{python} {WORK_DIR}/runner.py {WORK_DIR} &",
        "pid=$!",
        "trap 'kill -TERM $pid 2>/dev/null' TERM INT",
        "wait $pid; rc=$?",
        'while kill -0 "$pid" 2>/dev/null; do wait $pid; rc=$?; done',
        f"{python} {WORK_DIR}/emit.py {WORK_DIR} {key} {max_result_bytes}",
        "exit $rc",
    ]
    return "\n".join(lines) + "\n"


def env(spec: JobSpec, name: str) -> list[dict[str, Any]]:
    resources = spec.resources
    variables: list[dict[str, Any]] = [{"name": k, "value": _escape(v)} for k, v in spec.env]
    ours = {"CLUSTRIX_JOB_ID": name, "CLUSTRIX_CORES": str(resources.cores)}
    if resources.time:
        ours["CLUSTRIX_TIME_LIMIT"] = str(resources.time)
    if spec.parallel:
        ours["CLUSTRIX_PARALLEL"] = "1"
    variables += [{"name": k, "value": v} for k, v in ours.items()]
    # Where the job runs, as Kubernetes says: recorded in meta.json like the schedulers' variables.
    fields = {
        "CLUSTRIX_K8S_NODE": "spec.nodeName",
        "CLUSTRIX_K8S_POD": "metadata.name",
        "CLUSTRIX_K8S_NAMESPACE": "metadata.namespace",
    }
    variables += [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in fields.items()]
    return variables


def resources(spec: JobSpec) -> dict[str, dict[str, str]]:
    """Requests equal to limits: the job gets what it asked for, and no more."""
    asked = spec.resources
    amounts = {"cpu": str(asked.cores)}
    if asked.memory:
        amounts["memory"] = str(asked.memory)
    if asked.gpus:
        amounts["nvidia.com/gpu"] = str(asked.gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def job(
    spec: JobSpec,
    key: str,
    name: str,
    settings: Settings,
    client_id: str,
    secret_names: Sequence[str],
    serializer: bool = False,
) -> dict[str, Any]:
    if settings.image is None:
        raise ConfigError("backend 'kubernetes' needs image = '...' (an image with python3 and cloudpickle)")
    job_labels = labels(settings, client_id, name)
    mounts = [
        {"name": "clustrix-in", "mountPath": IN_DIR, "readOnly": True},
        {"name": "clustrix-work", "mountPath": WORK_DIR},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "clustrix-in", "projected": {"sources": [{"secret": {"name": s}} for s in secret_names]}},
        {"name": "clustrix-work", "emptyDir": {}},
    ]
    for index, volume in enumerate(settings.volumes):
        volumes.append(volume.volume(f"volume-{index}"))
        mounts.append(volume.mount_manifest(f"volume-{index}"))
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.image,
        "command": ["sh", "-c", script(spec, key, settings.max_result_bytes, serializer)],
        "env": env(spec, name),
        "resources": resources(spec),
        "volumeMounts": mounts,
    }
    if settings.image_pull_policy:
        container["imagePullPolicy"] = settings.image_pull_policy
    if settings.env_from:
        container["envFrom"] = [item.manifest() for item in settings.env_from]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": settings.termination_grace,
        "containers": [container],
        "volumes": volumes,
    }
    if settings.service_account:
        pod["serviceAccountName"] = settings.service_account
    if settings.node_selector:
        pod["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod["tolerations"] = [t.manifest() for t in settings.tolerations]
    job_spec: dict[str, Any] = {
        "backoffLimit": settings.backoff_limit,
        "template": {"metadata": {"labels": job_labels}, "spec": pod},
    }
    if settings.ttl_after_finished:
        job_spec["ttlSecondsAfterFinished"] = settings.ttl_after_finished
    # No activeDeadlineSeconds: it counts from the Job's start, time spent waiting for a node
    # included. The runner holds the call to its time limit (CLUSTRIX_TIME_LIMIT) itself.
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": job_labels,
            # The function's own name, whatever it holds: annotations take any text.
            "annotations": {KEY_ANNOTATION: key, FUNCTION_ANNOTATION: spec.name},
        },
        "spec": job_spec,
    }


def owner_patch(job_object: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A JSON patch that makes a Secret belong to its Job: deleting the Job deletes it (garbage collector)."""
    metadata = job_object["metadata"]
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": metadata["name"], "uid": metadata["uid"]}
    return [{"op": "add", "path": "/metadata/ownerReferences", "value": [owner]}]
