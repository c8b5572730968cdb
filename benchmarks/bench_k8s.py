"""Kubernetes backend overhead against bare Jobs made with the official client, on the same real cluster in one run.

    CLUSTRIX_CONFIG=/var/lib/clustrix-test/clustrix.toml .venv/bin/python benchmarks/bench_k8s.py [--n N] [--quick]

Prints figures, never asserts:

1. the floor: a bare batch/v1 Job (the profile's image, ``python3 -c 'import cloudpickle'``,
   backoffLimit 0) created with the official ``kubernetes`` client, watched with one watch
   until it completes, its pod's log read, then deleted: no clustrix at all (median of N);
2. one trivial clustrix call through the whole path (serialize, stage, Secret + Job, watch,
   log frames, HMAC, delete), median of N, and its ratio to the floor;
3. 100 trivial calls: clustrix ``map`` against 100 bare Jobs created with the same bounded
   concurrency (8 requests at once) and watched with one watch;
4. the API requests per second the backend's watch costs with 1, 10 and 100 Jobs outstanding
   (the list and watch requests, counted by the backend; the Jobs sleep, most of them pending
   for want of CPU): flat is the target, since polls are answered from the watch's cache.

Defaults take about 8 minutes on 2 cores, ``--quick`` about 4. The node has 2 CPUs and every
Job asks for one: 100 Jobs run two at a time, for the floor as for clustrix.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import time
import tomllib
import uuid
from pathlib import Path

import kubernetes
from timing import median_seconds, timed

from clustrix import cluster

PROFILE = "kubernetes"
CONCURRENCY = 8


def trivial(x: int) -> int:
    return x + 1


def slow(x: int) -> int:
    time.sleep(600)
    return x


class BareJobs:
    """Jobs with the official client only: what any program would do to run a command on Kubernetes."""

    def __init__(self, profile: dict) -> None:
        client = kubernetes.config.new_client_from_config(config_file=profile["kubeconfig"], persist_config=False)
        client.configuration.connection_pool_maxsize = CONCURRENCY + 4
        self.batch = kubernetes.client.BatchV1Api(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.namespace = profile["namespace"]
        self.image = profile["image"]
        self.pull = profile.get("image_pull_policy", "IfNotPresent")

    def manifest(self, name: str, run: str) -> dict:
        labels = {"bench": run}
        container = {
            "name": "job",
            "image": self.image,
            "imagePullPolicy": self.pull,
            "command": ["python3", "-c", "import cloudpickle; print(1 + 1)"],
            "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}},
        }
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"restartPolicy": "Never", "containers": [container]},
                },
            },
        }

    def run(self, count: int) -> None:
        """Create ``count`` Jobs, watch them all to completion, read each log, delete them."""
        run = uuid.uuid4().hex[:8]
        names = [f"bench-{run}-{i}" for i in range(count)]
        selector = f"bench={run}"
        with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(lambda n: self.batch.create_namespaced_job(self.namespace, self.manifest(n, run)), names))
            done: set[str] = set()
            watch = kubernetes.watch.Watch()
            for event in watch.stream(self.batch.list_namespaced_job, self.namespace, label_selector=selector):
                job = event["object"]
                if job.status.succeeded:
                    done.add(job.metadata.name)
                if len(done) == count:
                    watch.stop()
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
            logs = list(pool.map(lambda p: self.core.read_namespaced_pod_log(p.metadata.name, self.namespace), pods))
            assert all(log.strip() == "2" for log in logs), logs[:3]
            list(
                pool.map(
                    lambda n: self.batch.delete_namespaced_job(n, self.namespace, propagation_policy="Background"),
                    names,
                )
            )


def row(label: str, figure: str, note: str = "") -> None:
    print(f"  {label:<46}{figure}  {note}".rstrip())


def watch_cost(window: float) -> None:
    """Requests/s of the watch (lists and watches) with 1, 10, 100 sleeping Jobs outstanding."""
    fn = cluster(profile=PROFILE, cleanup="always")(slow)
    backend = fn.session().backend
    monitor = fn.session().monitor
    cluster(profile=PROFILE)(trivial)(0)  # another session: this one's watch starts with its first map
    for outstanding in (1, 10, 100):
        futures = fn.map(range(outstanding))
        time.sleep(2)  # past the creation burst
        before, polls = dict(backend.api.requests), monitor.polls
        time.sleep(window)
        made = {k: v - before.get(k, 0) for k, v in backend.api.requests.items()}
        watching = sum(v for k, v in made.items() if k.split()[0] in ("list", "watch"))
        other = sum(v for k, v in made.items() if k.split()[0] not in ("list", "watch"))
        print(
            f"  {outstanding:>3} outstanding: {watching / window:.3f} watch requests/s "
            f"({watching} in {window:g} s), {other} other requests, {monitor.polls - polls} polls"
        )
        fn.session().cancel([f.job for f in futures])
        waiting = concurrent.futures.wait(futures, timeout=300).not_done
        if waiting:
            print(f"  {len(waiting)} cancelled jobs still unresolved after 300 s")


def main(n: int, calls: int, window: float) -> None:
    profiles = tomllib.loads(Path(os.environ["CLUSTRIX_CONFIG"]).read_text())["profiles"]
    bare = BareJobs(profiles[PROFILE])
    clustrix_fn = cluster(profile=PROFILE)(trivial)
    # Warm both: connections, the watch, the image's page cache.
    bare.run(1)
    clustrix_fn(1)

    print(f"one trivial call, median of {n}:")
    floor = median_seconds(lambda: bare.run(1), n)
    row("floor (bare Job, one watch, log read, delete)", f"{floor * 1000:6.0f} ms")
    call = median_seconds(lambda: clustrix_fn(1), n)
    row("clustrix", f"{call * 1000:6.0f} ms", f"{call / floor:.2f}x floor")

    print(f"{calls} trivial calls, total:")
    took_floor, _ = timed(lambda: bare.run(calls))
    row(f"floor ({calls} bare Jobs, {CONCURRENCY} requests at once)", f"{took_floor:6.2f} s")
    took, values = timed(lambda: [f.result() for f in clustrix_fn.map(range(calls))])
    check = "" if values == [x + 1 for x in range(calls)] else "  WRONG RESULTS"
    row("clustrix map", f"{took:6.2f} s", f"{took / took_floor:.2f}x floor{check}")
    requests = clustrix_fn.session().backend.api.requests
    print(f"  API requests of the clustrix session so far: {json.dumps(dict(sorted(requests.items())))}")

    print(f"API requests per second the watch costs, by Jobs outstanding (window {window:g} s):")
    watch_cost(window)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, help="single calls per median (default 10, quick 3)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and shorter counting windows")
    parser.add_argument("--calls", type=int, default=100, help="calls in the many-calls comparison")
    args = parser.parse_args()
    if args.quick:
        main(args.n or 3, args.calls, window=30.0)
    else:
        main(args.n or 10, args.calls, window=130.0)
