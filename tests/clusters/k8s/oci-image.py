#!/usr/bin/env python3
"""Wrap one layer tar into an OCI image archive that `ctr images import` takes (used by k8s.sh).

    oci-image.py LAYER.tar NAME OUT.tar [--entrypoint ARG]... [--cmd ARG]... [--env K=V]...

The layer is stored uncompressed (its digest is then also its diff id); the image is linux/amd64-only
like the machine. NAME (e.g. clustrix.test/python:3) is recorded both as containerd's own name
annotation and as the OCI ref name, so the import needs no --base-name.
"""

import argparse
import hashlib
import io
import json
import os
import platform
import tarfile


def _digest_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def _arch():
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("layer")
    ap.add_argument("name")
    ap.add_argument("out")
    ap.add_argument("--entrypoint", action="append", default=[])
    ap.add_argument("--cmd", action="append", default=[])
    ap.add_argument("--env", action="append", default=[])
    a = ap.parse_args()

    layer_digest = _digest_file(a.layer)
    layer_size = os.path.getsize(a.layer)
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *a.env]
    config = {
        "architecture": _arch(),
        "os": "linux",
        "config": {"Env": env, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "tests/clusters/k8s.sh"}],
    }
    if a.entrypoint:
        config["config"]["Entrypoint"] = a.entrypoint
    if a.cmd:
        config["config"]["Cmd"] = a.cmd
    config_digest, config_bytes = _blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
    }
    manifest_digest, manifest_bytes = _blob(json.dumps(manifest, sort_keys=True).encode())
    tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": _arch(), "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": a.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }

    def add_bytes(tf, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        tf.addfile(info, io.BytesIO(data))

    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        add_bytes(tf, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add_bytes(tf, "index.json", json.dumps(index, sort_keys=True).encode())
        add_bytes(tf, "blobs/sha256/" + config_digest.split(":")[1], config_bytes)
        add_bytes(tf, "blobs/sha256/" + manifest_digest.split(":")[1], manifest_bytes)
        tf.add(a.layer, arcname="blobs/sha256/" + layer_digest.split(":")[1], recursive=False)
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
