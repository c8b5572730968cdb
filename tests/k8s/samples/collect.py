#!/usr/bin/env python3
"""Record the Job and pod objects of the kubernetes backend's status tests from the real test cluster.

    CLUSTRIX_CONFIG=/var/lib/clustrix-test/clustrix.toml .venv/bin/python tests/k8s/samples/collect.py

Each scenario is a plain batch/v1 Job made with the official client (no clustrix), in the
shape the backend makes (container ``job``, restartPolicy Never, backoffLimit 0), waited
for until it shows what the scenario is about; then the Job and its pods are saved, as
the API server returned them, to ``<scenario>.json`` here, and deleted. Run it again
after a Kubernetes upgrade: tests/k8s/test_status.py reads these files.
"""

from __future__ import annotations

import json
import os
import sys
import time
import tomllib
import uuid
from pathlib import Path

import kubernetes

HERE = Path(__file__).parent
PROFILE = tomllib.loads(Path(os.environ["CLUSTRIX_CONFIG"]).read_text())["profiles"]["kubernetes"]
NAMESPACE = PROFILE["namespace"]

SCENARIOS = {
    # name: (command, resources, image, deadline, what to wait for)
    "complete": ("echo done", {"cpu": "1"}, None, None, "Complete"),
    "exit3": ("echo failing >&2; exit 3", {"cpu": "1"}, None, None, "Failed"),
    "oom": (
        "python3 -c 'b = bytearray(400 * 1024 * 1024); import time; time.sleep(30)'",
        {"cpu": "1", "memory": str(100 * 1024**2)},
        None,
        None,
        "Failed",
    ),
    "deadline": ("sleep 300", {"cpu": "1"}, None, 5, "Failed"),
    "running": ("sleep 300", {"cpu": "1"}, None, None, "Running"),
    "never-pull": ("true", {"cpu": "1"}, "clustrix.test/no-such-image:1", None, "ErrImageNeverPull"),
    "unschedulable": ("true", {"cpu": "64"}, None, None, "Unschedulable"),
}


def manifest(name: str, command: str, resources: dict, image: str | None, deadline: int | None) -> dict:
    labels = {"app.kubernetes.io/managed-by": "clustrix", "clustrix.io/job": name}
    spec: dict = {
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 2,
                "containers": [
                    {
                        "name": "job",
                        "image": image or PROFILE["image"],
                        "imagePullPolicy": PROFILE.get("image_pull_policy", "IfNotPresent"),
                        "command": ["sh", "-c", command],
                        "resources": {"requests": resources, "limits": resources},
                    }
                ],
            },
        },
    }
    if deadline:
        spec["activeDeadlineSeconds"] = deadline
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels}, "spec": spec}


def shown(job: dict, pods: list[dict], what: str) -> bool:
    conditions = {c["type"] for c in job.get("status", {}).get("conditions") or () if c["status"] == "True"}
    if what in ("Complete", "Failed"):
        return what in conditions and all(p["status"].get("phase") in ("Succeeded", "Failed") for p in pods)
    for pod in pods:
        status = pod.get("status", {})
        if what == "Running" and status.get("phase") == "Running":
            return True
        waiting = [(c.get("state") or {}).get("waiting") or {} for c in status.get("containerStatuses") or ()]
        if any(w.get("reason") == what for w in waiting):
            return True
        if any(c.get("reason") == what for c in status.get("conditions") or ()):
            return True
    return False


def main() -> int:
    client = kubernetes.config.new_client_from_config(config_file=PROFILE["kubeconfig"], persist_config=False)
    batch, core = kubernetes.client.BatchV1Api(client), kubernetes.client.CoreV1Api(client)
    chosen = sys.argv[1:] or list(SCENARIOS)
    for scenario in chosen:
        command, resources, image, deadline, what = SCENARIOS[scenario]
        name = f"sample-{scenario}-{uuid.uuid4().hex[:6]}"
        batch.create_namespaced_job(NAMESPACE, manifest(name, command, resources, image, deadline))
        deadline_at = time.monotonic() + 180
        while True:
            job = json.loads(batch.read_namespaced_job(name, NAMESPACE, _preload_content=False).data)
            pods = json.loads(
                core.list_namespaced_pod(
                    NAMESPACE, label_selector=f"clustrix.io/job={name}", _preload_content=False
                ).data
            )["items"]
            if shown(job, pods, what) or time.monotonic() > deadline_at:
                break
            time.sleep(0.5)
        (HERE / f"{scenario}.json").write_text(json.dumps({"job": job, "pods": pods}, indent=1, sort_keys=True) + "\n")
        print(f"{scenario}: {what} {'seen' if shown(job, pods, what) else 'NOT SEEN'}; {len(pods)} pod(s)")
        batch.delete_namespaced_job(name, NAMESPACE, propagation_policy="Background")
    return 0


if __name__ == "__main__":
    sys.exit(main())
