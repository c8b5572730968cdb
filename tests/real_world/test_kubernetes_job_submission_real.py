"""The ``kubernetes`` backend against a real Kubernetes cluster: what ran, where, with what, and what came back.

The cluster comes from the profiles file (``tests/clusters/up k8s`` writes ``kubernetes``:
namespaces clustrix-test and clustrix-other, a PVC ``clustrix-data``, a ConfigMap
``clustrix-config`` and a Secret ``clustrix-secret`` in clustrix-test). Every check reads
what actually happened: the job's own view from inside its pod (environment, cgroup
limits, files, sockets) and the API server's, through the official client with the
profile's kubeconfig, independently of the backend under test.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cloudpickle
import kubernetes
import pytest

import clustrix.session
from clustrix import DependencyFailedError, JobFailedError, JobState, cluster
from clustrix.errors import (
    BackendUnavailableError,
    ConfigError,
    JobEnvironmentError,
    JobOutOfMemoryError,
    JobTimeoutError,
    ResultError,
    ResultMissingError,
    SerializationError,
    SubmissionError,
)
from tests import checkpoint_cases
from tests.conftest import profile_table, wait_for

pytestmark = [pytest.mark.real_world, pytest.mark.cluster_group("k8s")]

# Job functions travel by value: the pod has Python, cloudpickle and numpy, not this module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

NAMESPACE = "clustrix-test"
OTHER = "clustrix-other"


@pytest.fixture
def k8s(cluster_profile):
    profile = cluster_profile("kubernetes")
    api = Api(profile_table(profile)["kubeconfig"])
    before = clustrix_objects(api)
    yield profile
    # A test that failed while its jobs still run must not leave them holding the node's CPUs.
    for session in list(clustrix.session._sessions.values()):
        if session.config.backend == "kubernetes":
            # An API server that is down (the restart test) leaves nothing to cancel with.
            with contextlib.suppress(BackendUnavailableError):
                clustrix.cancel([f for f in list(session._futures.values()) if not f.done()])
    # Nothing the test made is left: an assertion, not a hope. Collected Jobs go at once and their
    # Secrets with them (the garbage collector); a killed client's Jobs go once one attaches.
    deadline = time.monotonic() + 60
    while (left := clustrix_objects(api) - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    for namespace, kind, name in left:
        # Removed so that the next test starts clean; this one fails below.
        if kind == "job":
            with contextlib.suppress(kubernetes.client.ApiException):
                api.delete(name, namespace)
    assert not left, f"left in the cluster after the test: {sorted(left)}"


def clustrix_objects(api: Api) -> set[tuple[str, str, str]]:
    """The Jobs and Secrets clustrix made in the test namespaces: (namespace, kind, name)."""
    selector = "app.kubernetes.io/managed-by=clustrix"
    found = set()
    for namespace in (NAMESPACE, OTHER):
        jobs = api.batch.list_namespaced_job(namespace, label_selector=selector).items
        secrets = api.core.list_namespaced_secret(namespace, label_selector=selector).items
        found |= {(namespace, "job", job.metadata.name) for job in jobs}
        found |= {(namespace, "secret", secret.metadata.name) for secret in secrets}
    return found


# -- helpers --------------------------------------------------------------------------------------


class Api:
    """The API server as the official client sees it with the profile's kubeconfig: the tests' own eyes."""

    def __init__(self, kubeconfig: str) -> None:
        client = kubernetes.config.new_client_from_config(config_file=kubeconfig, persist_config=False)
        self.core = kubernetes.client.CoreV1Api(client)
        self.batch = kubernetes.client.BatchV1Api(client)

    def job(self, name: str, namespace: str = NAMESPACE):
        try:
            return self.batch.read_namespaced_job(name, namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pods(self, job_name: str, namespace: str = NAMESPACE) -> list:
        return self.core.list_namespaced_pod(namespace, label_selector=f"clustrix.io/job={job_name}").items

    def secrets(self, job_name: str, namespace: str = NAMESPACE) -> list:
        return self.core.list_namespaced_secret(namespace, label_selector=f"clustrix.io/job={job_name}").items

    def delete(self, job_name: str, namespace: str = NAMESPACE) -> None:
        self.batch.delete_namespaced_job(job_name, namespace, propagation_policy="Background")


@pytest.fixture
def api(k8s) -> Api:
    return Api(profile_table(k8s)["kubeconfig"])


def variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, **overrides: object) -> str:
    """A profile ``name``: the ``kubernetes`` profile's keys with ``overrides`` (tables and lists too)."""
    current = Path(os.environ["CLUSTRIX_CONFIG"])
    table = {**profile_table("kubernetes"), **overrides}
    lines = [f"[profiles.{name}]"] + [f"{key} = {_toml(value)}" for key, value in table.items()]
    path = tmp_path / f"{name}.toml"
    path.write_text(current.read_text() + "\n" + "\n".join(lines) + "\n")
    monkeypatch.setenv("CLUSTRIX_CONFIG", str(path))
    return name


def _toml(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def add(x: int, y: int) -> int:
    return x + y


def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


# -- the basics and the environment ---------------------------------------------------------------


def test_add_returns_42(k8s):
    assert cluster(profile=k8s)(add)(10, 32) == 42


def test_a_failure_while_cleaning_up_still_ends_the_job(k8s, api):
    # Before: an unexpected error deleting the Job after its log was read left the job
    # "collecting" for ever, and its future never resolved.
    fn = cluster(profile=k8s)(add)
    backend = fn.session().backend
    real_delete = backend._delete

    def failing_delete(name, propagation):
        raise RuntimeError("the API server hiccuped")

    backend._delete = failing_delete
    try:
        future = fn.submit(1, 2)
        assert future.result(timeout=120) == 3
    finally:
        backend._delete = real_delete
    # The Job the failed delete left is still named; the fixture's cancel ends it.
    real_delete(future.job_id, "Background")


def pod_environment() -> dict:
    sa = Path("/var/run/secrets/kubernetes.io/serviceaccount")
    return {
        "env": {k: v for k, v in os.environ.items() if k.startswith(("KUBERNETES_", "CLUSTRIX_"))},
        "hostname": socket.gethostname(),
        "sa_namespace": (sa / "namespace").read_text(),
        "sa_token": (sa / "token").is_file(),
        "uid": os.getuid(),
    }


def test_kubernetes_environment_inside_the_pod(k8s, api):
    future = cluster(profile=k8s)(pod_environment).submit()
    seen = future.result(timeout=120)
    env = seen["env"]
    # The API server's service, as every pod is told of it (nothing answers there on this cluster).
    assert env["KUBERNETES_SERVICE_HOST"] and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["CLUSTRIX_JOB_ID"] == future.job_id
    assert env["CLUSTRIX_K8S_NAMESPACE"] == NAMESPACE == seen["sa_namespace"]
    assert env["CLUSTRIX_K8S_POD"] == seen["hostname"] == future.job.meta["host"]
    assert env["CLUSTRIX_K8S_POD"].startswith(future.job_id + "-")
    assert env["CLUSTRIX_K8S_NODE"] and seen["sa_token"]
    assert future.job.status.nodes == env["CLUSTRIX_K8S_NODE"]


# -- resources ------------------------------------------------------------------------------------


def cgroup_limits(seconds: float) -> dict:
    def read(path: str) -> str | None:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return None

    time.sleep(seconds)
    return {
        "memory": read("/sys/fs/cgroup/memory/memory.limit_in_bytes") or read("/sys/fs/cgroup/memory.max"),
        "cfs_quota": read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
        "cfs_period": read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
        "cpu_max": read("/sys/fs/cgroup/cpu.max"),
    }


def test_resources_are_the_pods_requests_and_limits(k8s, api):
    fn = cluster(profile=k8s, cores=1, memory="200MB", time="00:05:00")(cgroup_limits)
    future = fn.submit(4)
    wait_for(lambda: future.state is JobState.RUNNING, 120, "the job to run")
    pod = api.pods(future.job_id)[0]
    job = api.job(future.job_id)
    limits = future.result(timeout=120)
    resources = pod.spec.containers[0].resources
    assert resources.requests == resources.limits == {"cpu": "1", "memory": str(200 * 1024**2)}
    # The time limit is the runner's, not the Job's deadline (which would count pending time).
    assert job.spec.active_deadline_seconds is None and job.spec.backoff_limit == 0
    assert {e.name: e.value for e in pod.spec.containers[0].env}["CLUSTRIX_TIME_LIMIT"] == "300"
    assert pod.status.qos_class == "Guaranteed"
    # What the kernel enforces in the pod, not only what the API server stored.
    assert int(limits["memory"]) == 200 * 1024**2
    if limits["cfs_quota"] is not None:
        assert int(limits["cfs_quota"]) == int(limits["cfs_period"])
    else:
        quota, period = limits["cpu_max"].split()
        assert int(quota) == int(period)


def hold_memory(megabytes: int) -> int:
    block = bytearray(megabytes * 1024**2)
    time.sleep(2)
    return len(block)


def test_validator_sees_the_pods_allocation_and_metrics(k8s, cluster_validator):
    job = cluster(profile=k8s, cores=1, memory="300MB", time="00:05:00")
    result = cluster_validator.validate(job(hold_memory).submit(50), expected_value=50 * 1024**2)
    assert result.passed, result.summary()
    checks = {c.name: c for c in result.checks}
    assert checks["submission"].passed
    assert checks["allocated cores"].actual == 1
    assert checks["allocated memory"].actual == 300 * 1024**2
    assert checks["allocated time limit"].actual == 300
    assert checks["state transitions"].actual == "PENDING -> RUNNING -> COMPLETED"
    metrics = result.metrics
    assert metrics.source == "kubernetes" and metrics.exit_code == 0
    assert metrics.started_at <= metrics.ended_at and metrics.run_time >= 2
    assert metrics.submitted_at <= metrics.started_at
    assert metrics.allocated_cores == 1 and metrics.allocated_memory == 300 * 1024**2
    assert metrics.peak_memory >= 50 * 1024**2 and metrics.nodes


# -- namespaces -----------------------------------------------------------------------------------


def namespace_of_pod() -> str:
    return Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text()


def test_namespace_isolation(k8s, api, tmp_path, monkeypatch):
    other = variant(tmp_path, monkeypatch, "k8s-other", namespace=OTHER, delete_jobs="never")
    future = cluster(profile=other)(namespace_of_pod).submit()
    try:
        assert future.result(timeout=120) == OTHER
        assert api.job(future.job_id, OTHER) is not None
        assert api.job(future.job_id, NAMESPACE) is None
        assert api.pods(future.job_id, OTHER) and not api.pods(future.job_id, NAMESPACE)
    finally:
        api.delete(future.job_id, OTHER)
    # clustrix-test's Secret is not there in clustrix-other: the pod cannot start, and says why.
    other = variant(tmp_path, monkeypatch, "k8s-other-2", namespace=OTHER)
    fn = cluster(profile=other, env_from=[{"secret": "clustrix-secret"}], container_error_grace=3)(add)
    with pytest.raises(JobFailedError, match='CreateContainerConfigError: secret "clustrix-secret" not found'):
        fn(1, 2)


def test_a_user_with_rights_in_one_namespace_is_refused_in_the_other(k8s, tmp_path, monkeypatch):
    tester = str(Path(profile_table(k8s)["kubeconfig"]).with_name("kubeconfig-tester"))
    assert Path(tester).is_file(), "tests/clusters/up k8s writes a second user's kubeconfig beside the admin's"
    assert cluster(profile=variant(tmp_path, monkeypatch, "tester", kubeconfig=tester))(add)(1, 2) == 3
    refused = variant(tmp_path, monkeypatch, "tester-other", kubeconfig=tester, namespace=OTHER)
    with pytest.raises(SubmissionError, match=f'403 Forbidden: .*cannot create resource .* in .*namespace "{OTHER}"'):
        cluster(profile=refused)(add)(1, 2)


# -- storage, network, configuration ------------------------------------------------------------------


def write_file(path: str, text: str) -> str:
    Path(path).write_text(text)
    time.sleep(3)  # long enough for the test to look at the pod
    return socket.gethostname()


def read_and_remove(path: str) -> tuple[str, str]:
    text = Path(path).read_text()
    Path(path).unlink()
    return text, socket.gethostname()


def test_persistent_volume_claim_outlives_the_pod(k8s, api, tmp_path, monkeypatch):
    claim = api.core.read_namespaced_persistent_volume_claim("clustrix-data", NAMESPACE)
    assert claim.status.phase == "Bound"
    profile = variant(tmp_path, monkeypatch, "k8s-data", volumes=[{"pvc": "clustrix-data", "mount": "/data"}])
    path, text = f"/data/{uuid.uuid4().hex}.txt", f"written at {time.time()}"
    writer = cluster(profile=profile)(write_file).submit(path, text)
    wait_for(lambda: writer.state is JobState.RUNNING, 120, "the writer to run")
    volumes = {v.name: v for v in api.pods(writer.job_id)[0].spec.volumes}
    assert any(
        v.persistent_volume_claim and v.persistent_volume_claim.claim_name == "clustrix-data" for v in volumes.values()
    )
    first_pod = writer.result(timeout=120)
    read_back, second_pod = cluster(profile=profile)(read_and_remove)(path)
    assert read_back == text
    assert first_pod != second_pod, "two pods, one volume"


def serve_once(port: int) -> str:
    with socket.create_server(("0.0.0.0", port)) as server:  # all of the pod's addresses: its own network only
        server.settimeout(120)
        conn, _ = server.accept()
        with conn:
            data = conn.recv(100)
            conn.sendall(b"echo " + data)
    return data.decode()


def call_pod(address: str, port: int) -> tuple[str, str, str]:
    with socket.create_connection((address, port), timeout=30) as conn:
        conn.sendall(b"ping")
        answer = conn.recv(100).decode()
        return answer, conn.getsockname()[0], socket.gethostname()


def test_pods_have_their_own_address_and_reach_each_other(k8s, api):
    server = cluster(profile=k8s)(serve_once).submit(8765)
    wait_for(lambda: server.state is JobState.RUNNING, 120, "the server pod to run")
    server_pod = api.pods(server.job_id)[0]
    address = wait_for(lambda: api.pods(server.job_id)[0].status.pod_ip, 30, "the pod's IP")
    time.sleep(1)  # the server binds right after Python starts
    answer, client_ip, client_host = cluster(profile=k8s)(call_pod)(address, 8765)
    assert answer == "echo ping"
    assert server.result(timeout=60) == "ping"
    assert server.job.meta["host"] == server_pod.metadata.name
    assert client_host.startswith("call-pod-") and client_ip != address
    assert client_ip.split(".")[:2] == address.split(".")[:2], "both in the pod network"


def read_configuration() -> dict:
    return {
        "username": Path("/secret/username").read_text(),
        "password": Path("/secret/password").read_text(),
        "greeting": Path("/config/greeting").read_text(),
        "settings": json.loads(Path("/config/settings.json").read_text()),
        "env": {k: v for k, v in os.environ.items() if k in ("username", "password", "CFG_greeting")},
        "writable": os.access("/config", os.W_OK),
    }


def test_secrets_and_config_maps_as_files_and_environment(k8s, tmp_path, monkeypatch, caplog):
    profile = variant(
        tmp_path,
        monkeypatch,
        "k8s-config",
        volumes=[
            {"secret": "clustrix-secret", "mount": "/secret"},
            {"config_map": "clustrix-config", "mount": "/config"},
        ],
        env_from=[{"secret": "clustrix-secret"}, {"config_map": "clustrix-config", "prefix": "CFG_"}],
    )
    with caplog.at_level("DEBUG", logger="clustrix"):
        seen = cluster(profile=profile)(read_configuration)()
    assert seen["username"] == "clustrix" and seen["password"] == "s3cret-for-tests"
    assert seen["greeting"] == "hello from clustrix-config" and seen["settings"] == {"answer": 42}
    assert seen["env"] == {"username": "clustrix", "password": "s3cret-for-tests", "CFG_greeting": seen["greeting"]}
    assert not seen["writable"]
    assert "s3cret-for-tests" not in caplog.text


# -- many jobs ------------------------------------------------------------------------------------


def multiply_block(a: list, b: list) -> tuple[list, str]:
    import numpy

    return (numpy.array(a) @ numpy.array(b)).tolist(), socket.gethostname()


def test_parallel_matrix_blocks_with_numpy_through_map(k8s):
    size, blocks = 40, 4
    rows = [[(i * 7 + j * 3) % 11 - 5 for j in range(size)] for i in range(size * blocks)]
    other = [[(i + 2 * j) % 5 - 2 for j in range(size)] for i in range(size)]
    parts = [rows[k * size : (k + 1) * size] for k in range(blocks)]
    fn = cluster(profile=k8s)(multiply_block)
    futures = fn.map(parts, [other] * blocks)
    results = [f.result(timeout=300) for f in futures]
    product = [row for block, _ in results for row in block]
    expected = [[sum(r[k] * other[k][j] for k in range(size)) for j in range(size)] for r in rows]
    assert product == expected
    assert len({host for _, host in results}) == blocks, "one pod per call"
    assert len({f.job_id for f in futures}) == blocks


def test_one_watch_for_many_jobs_and_no_request_per_poll(k8s):
    fn = cluster(profile=k8s, poll_interval=0.1, poll_interval_max=0.2)(add)
    backend = fn.session().backend
    fn(0, 0)  # the watch runs from the first submission on
    before, polls = dict(backend.api.requests), fn.session().monitor.polls
    futures = fn.map(range(12), range(12))
    assert [f.result(timeout=300) for f in futures] == [2 * x for x in range(12)]
    made = {k: v - before.get(k, 0) for k, v in backend.api.requests.items() if v - before.get(k, 0)}
    assert fn.session().monitor.polls - polls >= 5
    # Per job: its Secret, its Job, the Secret's owner, the log, the deletion; nothing per poll.
    assert made.get("create job") == made.get("create secret") == made.get("read log") == 12
    assert made.get("delete job") == 12
    assert not made.get("read job") and not made.get("list pods") and not made.get("list jobs")
    assert made.get("watch jobs", 0) <= 2 and made.get("watch pods", 0) <= 2


# -- a job's life -----------------------------------------------------------------------------------


def test_job_lifecycle_created_running_succeeded_cleaned_up(k8s, api):
    future = cluster(profile=k8s)(sleep_for).submit(4)
    created = wait_for(lambda: api.job(future.job_id), 30, "the Job")
    assert created.metadata.labels["app.kubernetes.io/managed-by"] == "clustrix"
    assert len(api.secrets(future.job_id)) == 1
    wait_for(lambda: future.state is JobState.RUNNING, 120, "the job to run")
    assert api.job(future.job_id).status.active == 1
    assert future.result(timeout=120) == "woke"
    assert [state for state, _ in future.job.history] == [JobState.PENDING, JobState.RUNNING, JobState.COMPLETED]
    # The Job goes, and with it (its dependents, through the garbage collector) its pod and Secret.
    wait_for(lambda: api.job(future.job_id) is None, 30, "the Job to be deleted")
    wait_for(lambda: not api.pods(future.job_id) and not api.secrets(future.job_id), 60, "its pod and Secret to go")


def test_delete_jobs_never_keeps_the_job_for_inspection(k8s, api, tmp_path, monkeypatch):
    profile = variant(tmp_path, monkeypatch, "k8s-keep", delete_jobs="never")
    future = cluster(profile=profile)(add).submit(1, 2)
    assert future.result(timeout=120) == 3
    try:
        job = api.job(future.job_id)
        assert job.status.succeeded == 1
        secret = api.secrets(future.job_id)[0]
        assert secret.metadata.owner_references[0].uid == job.metadata.uid
    finally:
        api.delete(future.job_id)


def test_a_finished_job_nobody_collects_is_deleted_by_the_api_server_after_its_ttl(k8s, api, tmp_path, monkeypatch):
    # What a client that died leaves (here: one that keeps its Jobs) goes once ttl_after_finished has
    # passed, Secrets and pod with it; a day by default.
    default = variant(tmp_path, monkeypatch, "k8s-keep-default", delete_jobs="never")
    kept = cluster(profile=default)(add).submit(1, 2)
    assert kept.result(timeout=120) == 3
    try:
        assert api.job(kept.job_id).spec.ttl_seconds_after_finished == 86400
    finally:
        api.delete(kept.job_id)
    profile = variant(tmp_path, monkeypatch, "k8s-keep-a-minute", delete_jobs="never", ttl_after_finished=60)
    future = cluster(profile=profile)(add).submit(1, 2)
    assert future.result(timeout=120) == 3
    assert api.job(future.job_id).spec.ttl_seconds_after_finished == 60
    wait_for(lambda: api.job(future.job_id) is None, 180, "the API server to delete the Job after its TTL")
    wait_for(lambda: not api.pods(future.job_id) and not api.secrets(future.job_id), 60, "its pod and Secret to go")


def test_cancel_deletes_the_job_and_its_pod(k8s, api):
    future = cluster(profile=k8s)(sleep_for).submit(300)
    wait_for(lambda: future.state is JobState.RUNNING, 120, "the job to run")
    cancelled_at = time.monotonic()
    assert future.cancel()
    with pytest.raises(Exception) as info:
        future.result(timeout=5)
    assert type(info.value).__name__ == "CancelledError"
    wait_for(lambda: future.job.state is JobState.CANCELLED, 60, "the monitor to see CANCELLED")
    # The TERM reached Python at once (the container's shell forwards it): well within the 10 s grace.
    assert time.monotonic() - cancelled_at < 8
    assert future.job.status.exit_code in (143, None)
    wait_for(lambda: api.job(future.job_id) is None and not api.pods(future.job_id), 60, "the Job and pod to go")
    assert cluster(profile=k8s)(add)(2, 3) == 5


# -- how jobs fail ------------------------------------------------------------------------------------


class PayloadError(ValueError):
    pass


def raise_payload_error(n: int) -> None:
    raise PayloadError(f"bad payload {n}")


def test_exception_type_round_trips_with_remote_traceback(k8s):
    with pytest.raises(PayloadError, match="bad payload 7") as info:
        cluster(profile=k8s)(raise_payload_error)(7)
    assert "raise_payload_error" in info.value.remote_traceback
    assert any("Remote traceback" in note for note in info.value.__notes__)


def exit_hard(code: int) -> None:
    print("about to exit", file=sys.stderr, flush=True)
    os._exit(code)


def test_exit_code_reaches_job_failed_error_with_stderr(k8s):
    future = cluster(profile=k8s)(exit_hard).submit(3)
    with pytest.raises(JobFailedError) as info:
        future.result(timeout=120)
    assert info.value.state is JobState.FAILED and info.value.exit_code == 3
    assert "about to exit" in info.value.stderr_tail


def eat_memory(megabytes: int) -> int:
    hog = bytearray(megabytes * 1024**2)
    for i in range(0, len(hog), 4096):
        hog[i] = 1
    time.sleep(30)
    return len(hog)


def test_memory_over_the_limit_is_oom_killed(k8s, api, tmp_path, monkeypatch):
    profile = variant(tmp_path, monkeypatch, "k8s-keep-oom", delete_jobs="never")
    future = cluster(profile=profile, memory="100MB")(eat_memory).submit(400)
    try:
        with pytest.raises(JobOutOfMemoryError, match="OOMKilled") as info:
            future.result(timeout=180)
        assert info.value.state is JobState.OUT_OF_MEMORY
        terminated = api.pods(future.job_id)[0].status.container_statuses[0].state.terminated
        assert terminated.reason == "OOMKilled"
    finally:
        api.delete(future.job_id)


def test_time_limit_is_held_by_the_runner_in_the_pod(k8s, api, tmp_path, monkeypatch):
    profile = variant(tmp_path, monkeypatch, "k8s-keep-limit", delete_jobs="never")
    future = cluster(profile=profile, time="00:00:04")(sleep_for).submit(300)
    try:
        with pytest.raises(JobTimeoutError, match="time limit of 4 s") as info:
            future.result(timeout=180)
        assert info.value.state is JobState.TIMEOUT
        assert future.job.meta["outcome"] == "timed out"
        # Not the Job's deadline, which would count the time the pod waited for a node too.
        assert api.job(future.job_id).spec.active_deadline_seconds is None
    finally:
        api.delete(future.job_id)


def test_time_waiting_for_a_node_is_not_running_time(k8s):
    # The node runs two one-core pods at once: six of these eight calls wait for a node longer
    # than their 4 s limit. Only the call that runs past it times out.
    fn = cluster(profile=k8s, cores=1, time="00:00:04")(sleep_for)
    futures = fn.map([2, 2, 60, 2, 2, 2, 2, 2])
    outcomes = []
    for future in futures:
        try:
            outcomes.append(future.result(timeout=300))
        except JobTimeoutError:
            outcomes.append("timeout")
    assert outcomes == ["woke", "woke", "timeout", "woke", "woke", "woke", "woke", "woke"]


ORPHANING_CLIENT = """
import os, sys
from clustrix import cluster

@cluster(profile=sys.argv[1], cores=1)
def slow_double(x):
    import time
    time.sleep(3)
    return 2 * x

single = slow_double.submit(21)
mapped = slow_double.map([1, 2, 3])
print(single.job_id, *[f.job_id for f in mapped], flush=True)
os.kill(os.getpid(), 9)  # no clean-up of any kind, as a killed notebook kernel
"""


def test_a_killed_clients_jobs_are_collected_and_cleaned_by_a_new_process(k8s, api):
    out = subprocess.run(
        [sys.executable, "-c", ORPHANING_CLIENT, k8s], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert out.returncode == -9, out.stderr
    ids = out.stdout.split()
    assert len(ids) == 4 and all(api.job(name) is not None for name in ids)
    assert [clustrix.attach(name).result(timeout=180) for name in ids] == [42, 2, 4, 6]
    for name in ids:
        wait_for(lambda n=name: api.job(n) is None and not api.secrets(n), 60, f"{name} and its Secrets to go")


def test_an_image_that_cannot_start_fails_after_the_grace_period(k8s, api):
    fn = cluster(profile=k8s, image="clustrix.test/no-such-image:1", container_error_grace=3)(add)
    future = fn.submit(1, 2)
    started = time.monotonic()
    with pytest.raises(JobFailedError, match="ErrImageNeverPull") as info:
        future.result(timeout=120)
    assert time.monotonic() - started >= 3
    assert info.value.state is JobState.FAILED
    wait_for(lambda: api.job(future.job_id) is None, 30, "the stuck Job to be deleted")


def test_unschedulable_with_the_schedulers_message(k8s):
    fn = cluster(profile=k8s, cores=64, unschedulable_timeout=5)(add)
    with pytest.raises(JobFailedError, match="Unschedulable: 0/1 nodes are available: 1 Insufficient cpu"):
        fn(1, 2)


def test_a_missing_result_frame_is_result_missing(k8s):
    # The setup lines run after the inputs are copied: replace the emitter with one that says nothing.
    fn = cluster(profile=k8s, setup=["echo 'print(\"no frames\")' > /clustrix/work/emit.py"])(add)
    with pytest.raises(ResultMissingError, match="completed but wrote no result file"):
        fn(1, 2)


def test_a_garbled_result_frame_is_refused_before_unpickling(k8s):
    # Every base64 line of every frame reversed: the checksum fails, the HMAC is never satisfied.
    garble = "sed -i 's/yield text\\[start : start + LINE\\]/yield text[start : start + LINE][::-1]/' "
    fn = cluster(profile=k8s, setup=[garble + "/clustrix/work/emit.py"])(add)
    future = fn.submit(1, 2)
    with pytest.raises(ResultError, match="result"):
        future.result(timeout=120)
    assert "log frames: " in future.job.status.reason


def test_recovers_after_failures(k8s):
    assert cluster(profile=k8s)(add)(20, 22) == 42


# -- large payloads and results ---------------------------------------------------------------------


def digest(data: bytes) -> tuple[int, str]:
    return len(data), hashlib.sha256(data).hexdigest()


def test_a_payload_over_one_mib_is_split_across_secrets(k8s, api, tmp_path, monkeypatch):
    data = os.urandom(3 * 1024**2)
    profile = variant(tmp_path, monkeypatch, "k8s-keep-large", delete_jobs="never")
    future = cluster(profile=profile)(digest).submit(data)
    try:
        assert future.result(timeout=180) == digest(data)
        # Each Secret holds at most 1 MiB: the first one's share is smaller (runner, emitter, serializer).
        assert len(api.secrets(future.job_id)) == 4
    finally:
        api.delete(future.job_id)


def test_a_20_mb_argument_is_refused_at_the_documented_limit_or_round_trips_above_it(k8s, tmp_path, monkeypatch):
    data = os.urandom(20 * 1024**2)
    with pytest.raises(SerializationError, match="over max_payload_secrets=16; pass large data through a volume"):
        cluster(profile=k8s, memory="500MB")(digest).submit(data)
    profile = variant(tmp_path, monkeypatch, "k8s-large-payloads", max_payload_secrets=24)
    assert cluster(profile=profile, memory="500MB")(digest)(data) == digest(data)


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def test_a_large_result_arrives_intact(k8s):
    value = cluster(profile=k8s, memory="500MB")(random_bytes)(5 * 1024**2)
    assert len(value) == 5 * 1024**2


def test_a_result_over_max_result_bytes_is_a_clear_error(k8s):
    with pytest.raises(JobEnvironmentError, match=r"over max_result_bytes=6291456.*containerLogMaxSize"):
        cluster(profile=k8s, memory="500MB")(random_bytes)(7 * 1024**2)


# -- pipelines -------------------------------------------------------------------------------------


def sleep_then(seconds: float, value: object) -> object:
    time.sleep(seconds)
    return value


def scale(values: list[int], factor: int) -> list[int]:
    return [value * factor for value in values]


def test_a_three_step_pipeline_runs_each_step_after_the_last_with_its_value(k8s, api):
    first = cluster(profile=k8s)(sleep_then).submit(3, [1, 2, 3])
    second = cluster(profile=k8s)(scale).submit(first, factor=10)
    third = cluster(profile=k8s)(sum).submit(second)
    # A pod cannot read another job's result: a waiting call is held by the client, no Job yet.
    assert api.job(second.job_id) is None and api.job(third.job_id) is None
    assert second.state is JobState.PENDING
    assert third.result(timeout=300) == 60
    assert second.result() == [10, 20, 30]
    assert second.job.meta["start"] >= first.job.meta["end"]
    assert third.job.meta["start"] >= second.job.meta["end"]


def test_after_orders_calls_that_pass_no_value_and_a_map_can_wait(k8s):
    upstream = cluster(profile=k8s)(sleep_for).submit(3)
    futures = cluster(profile=k8s)(add).after(upstream).map(range(3), range(3))
    assert [f.result(timeout=300) for f in futures] == [0, 2, 4]
    assert all(f.job.meta["start"] >= upstream.job.meta["end"] for f in futures)


def test_a_value_over_one_mib_from_one_step_reaches_the_next(k8s):
    produced = cluster(profile=k8s, memory="500MB")(random_bytes).submit(3 * 1024**2)
    consumed = cluster(profile=k8s, memory="500MB")(digest).submit(produced)
    assert consumed.result(timeout=300) == digest(produced.result())


def test_a_failed_step_ends_the_steps_after_it_which_never_run(k8s, api):
    failing = cluster(profile=k8s)(int).submit("x")
    waiting = cluster(profile=k8s)(add).submit(failing, 1)
    after_that = cluster(profile=k8s)(add).after(waiting).submit(1, 2)
    with pytest.raises(DependencyFailedError, match=f"job {failing.job_id} it depends on ended FAILED"):
        waiting.result(timeout=180)
    with pytest.raises(DependencyFailedError, match=f"job {waiting.job_id} it depends on ended CANCELLED"):
        after_that.result(timeout=60)
    for future in (waiting, after_that):
        assert future.state is JobState.CANCELLED
        assert JobState.RUNNING not in [state for state, _ in future.job.history]
        assert api.job(future.job_id) is None
    # A call on an upstream that already failed is refused at once, as on every backend.
    with pytest.raises(DependencyFailedError, match="not submitted"):
        cluster(profile=k8s)(add).submit(failing, 1)


def test_cancelling_a_held_call_ends_it_and_its_upstream_runs_on(k8s, api):
    upstream = cluster(profile=k8s)(sleep_for).submit(3)
    held = cluster(profile=k8s)(add).after(upstream).submit(1, 2)
    assert held.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        held.result(timeout=60)
    assert upstream.result(timeout=120) == "woke"
    time.sleep(2)  # a poll or two after its upstream completed: the cancelled call stays uncreated
    assert api.job(held.job_id) is None


# -- hostile values ------------------------------------------------------------------------------------


def report_env() -> dict:
    return {k: os.environ[k] for k in ("X", "Y")}


def test_hostile_names_and_env_values_are_harmless_and_byte_exact(k8s, api):
    value = "$(HOME) $$ `id` $(touch /tmp/pwned) ' \" \\ \n ${PATH} %s\t end"
    name = "a;b$(touch /tmp/pwned)\n#evil: {x}"
    fn = cluster(profile=k8s, name=name, env={"X": value, "Y": "$(X)"})(report_env)
    future = fn.submit()
    assert future.result(timeout=120) == {"X": value, "Y": "$(X)"}
    assert future.job_id.startswith("a-b-touch-tmp-pwned-evil-x-")
    journal = [json.loads(line) for line in Path(os.environ["CLUSTRIX_JOURNAL"]).read_text().splitlines()]
    assert any(entry.get("job_id") == future.job_id for entry in journal)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("labels", {"team": "x\ny"}),
        ("labels", {"clustrix.io/client": "someone-else"}),
        ("node_selector", {"kubernetes.io/hostname": "$(hostname)"}),
        ("namespace", "clustrix-test;kube-system"),
        ("image", "python:3 --privileged"),
        ("volumes", [{"pvc": "clustrix-data", "mount": "/clustrix/in"}]),
        ("service_account", "../admin"),
        ("env", {"X; touch /tmp/pwned": "1"}),
    ],
)
def test_hostile_profile_values_are_refused_before_anything_is_created(k8s, api, key, value):
    before = len(api.batch.list_namespaced_job(NAMESPACE).items)
    with pytest.raises(ConfigError):
        cluster(profile=k8s, **{key: value})(add)(1, 2)
    assert len(api.batch.list_namespaced_job(NAMESPACE).items) <= before


def test_unsupported_requests_are_refused_with_reasons(k8s):
    with pytest.raises(ConfigError, match="runs a call only once"):
        cluster(profile=k8s, nodes=2)(add)(1, 2)
    with pytest.raises(SubmissionError, match="node_selector"):
        cluster(profile=k8s, partition="debug")(add)(1, 2)


def test_backend_check_names_the_server_and_namespace(k8s):
    described = cluster(profile=k8s)(add).session().backend.check()
    assert described.startswith("Kubernetes v1.") and f"namespace {NAMESPACE}" in described


# -- the expensive ones ------------------------------------------------------------------------------


def heavy_linear_algebra(n: int) -> dict:
    import numpy

    rng = numpy.random.default_rng(7)
    a = rng.standard_normal((n, n))
    symmetric = a @ a.T
    values = numpy.linalg.eigvalsh(symmetric)
    inverse = numpy.linalg.inv(symmetric + n * numpy.eye(n))
    identity = inverse @ (symmetric + n * numpy.eye(n))
    return {
        "trace_matches": bool(numpy.isclose(values.sum(), numpy.trace(symmetric), rtol=1e-8)),
        "min_eigenvalue": float(values.min()),
        "identity_error": float(numpy.abs(identity - numpy.eye(n)).max()),
        "cpus": len(os.sched_getaffinity(0)),
    }


@pytest.mark.expensive
def test_resource_intensive_numpy(k8s, cluster_validator):
    fn = cluster(profile=k8s, cores=2, memory="1GB", time="00:10:00")(heavy_linear_algebra)
    future = fn.submit(1500)
    result = cluster_validator.validate(future, value_check=lambda v: v["trace_matches"])
    assert result.passed, result.summary()
    value = future.result()
    assert value["min_eigenvalue"] > -1e-6 and value["identity_error"] < 1e-8
    assert {c.name: c.actual for c in result.checks}["allocated cores"] == 2


@pytest.mark.expensive
def test_a_job_outlives_several_watch_expiries(k8s):
    fn = cluster(profile=k8s)(sleep_for)
    backend = fn.session().backend
    before = collections.Counter(backend.api.requests)  # the session, and its watch, may be older
    future = fn.submit(150)
    assert future.result(timeout=400) == "woke"
    made = collections.Counter(backend.api.requests) - before
    # The server ends each watch after 60 s: it was resumed from its resourceVersion, not listed
    # again for every expiry (one list is allowed, for a 410 Gone if etcd compacted meanwhile).
    assert made["watch jobs"] >= 2, made
    assert made["list jobs"] <= 1, made


def test_a_program_exits_promptly_after_its_last_result(k8s):
    import subprocess

    from clustrix_k8s.watch import WATCH_SECONDS

    program = f"from clustrix import cluster; print(cluster(profile={k8s!r})(pow)(2, 10))"
    # Each watch is open for WATCH_SECONDS; closing the backend at exit must end them, not
    # wait them out (a CI run once hung there after every test had passed).
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=WATCH_SECONDS * 0.8)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "1024"


CLUSTERS = Path(__file__).resolve().parents[1] / "clusters"
STATE = Path(os.environ.get("CLUSTRIX_TEST_STATE", "/var/lib/clustrix-test"))


@pytest.mark.expensive
def test_the_watch_resumes_after_the_api_server_restarts(k8s):
    import signal
    import subprocess

    fn = cluster(profile=k8s, poll_failure_timeout=300)(sleep_for)
    future = fn.submit(40)
    wait_for(lambda: future.state is JobState.RUNNING, 120, "the job to run")
    pid = int((STATE / "run" / "k8s-apiserver.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    try:
        wait_for(lambda: fn.session().backend._watchers[0].error, 60, "the watch to notice")
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 120, "the API server to stop")
    finally:
        out = subprocess.run([str(CLUSTERS / "up"), "k8s"], timeout=600, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert future.result(timeout=300) == "woke"
    assert fn.session().backend.api.requests["list jobs"] >= 2, "it listed again after the restart"
    assert cluster(profile=k8s)(add)(20, 22) == 42


def test_a_checkpointable_call_is_refused_before_anything_is_created(k8s, api):
    # A pod's files go with it: a checkpoint written there could never reach the next pod.
    before = {job.metadata.name for job in api.batch.list_namespaced_job(NAMESPACE).items}
    with pytest.raises(ConfigError, match="the kubernetes backend cannot resume a checkpoint"):
        cluster(profile=k8s, time="00:01:00")(checkpoint_cases.Counter(1, 0.0)).submit(0)
    after = {job.metadata.name for job in api.batch.list_namespaced_job(NAMESPACE).items}
    assert after == before
