"""The ``kubernetes`` backend: one batch/v1 Job per call, watched, with its result read back from the pod's log.

The session stages each call in a local job directory, as for every backend; that
directory is the client's copy of the job. ``submit`` reads payload, key and runner
from it and creates, per call, the Secret(s) that carry them and the Job that runs
them (a ``map`` is created with bounded concurrency on the API). Two watch threads
(Jobs and pods, one namespace, one label selector naming this client) keep a cache
of every object this client made, so ``poll`` answers from memory, whatever the
number of jobs. When a Job ends, a worker reads the pod's log, checks the frames
``emit.py`` wrote there and writes result.pkl, meta.json, stdout and stderr into the
local directory before ``poll`` reports the end; the core then authenticates the
result with the job's HMAC key as for any backend. Then the Job is deleted (its pods
and Secrets go with it, as its dependents), unless ``delete_jobs`` keeps it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import importlib
import importlib.resources
import io
import json
import pathlib
import sysconfig
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import attrs

from clustrix import runner
from clustrix.backend import RUNNER_SOURCE, Backend, StagedJob
from clustrix.errors import BackendUnavailableError, ClustrixError, ConfigError, SubmissionError
from clustrix.log import get_logger
from clustrix.records import Allocation, JobMetrics
from clustrix.state import JobState, JobStatus
from clustrix_k8s import framing, manifest, status, upstream
from clustrix_k8s.client import Api
from clustrix_k8s.options import OPTIONS
from clustrix_k8s.watch import Watcher

EMIT_SOURCE = importlib.resources.files("clustrix_k8s").joinpath("emit.py").read_bytes()
# A pod log is at most the kubelet's containerLogMaxSize (10 MiB by default); read no more than this.
MAX_LOG_BYTES = 64 * 1024**2
# A Job the watch has not shown this long after its creation is looked up directly.
UNSEEN_CHECK = 30.0
# Finished jobs remembered for the validator's questions (their final Job and pod).
REMEMBERED = 5000
# At most one warning about unschedulable jobs this often (seconds); the rest at debug level.
UNSCHEDULABLE_SAY_EVERY = 300.0


@attrs.define
class Tracked:
    """What the backend knows of one Job it created."""

    name: str
    key: str
    directory: str
    created: float
    status: JobStatus = attrs.field(factory=lambda: JobStatus(JobState.PENDING, reason="submitted"))
    seen: bool = False
    cancelled: bool = False
    owned: bool = True
    checked: float = 0.0
    collecting: bool = False
    collected: bool = False
    final_job: dict[str, Any] | None = None
    final_pod: dict[str, Any] | None = None
    # A call that waits for others: staged but not created until they completed (``upstream``).
    held: StagedJob | None = None
    upstreams: tuple[Tracked, ...] = ()
    releasing: bool = False


class KubernetesBackend(Backend):
    """Jobs as batch/v1 Jobs; the job id is the Job's name in the profile's namespace."""

    options: ClassVar[Mapping[str, Callable[[Any], Any]]] = OPTIONS
    default_transport: ClassVar[str] = "local"
    # A pod's files go with it: a checkpoint written there could not reach the next pod.
    resumes_checkpoints: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Names this client's Jobs in their labels: its watch sees only them.
        self.client_id = uuid.uuid4().hex[:12]
        self.api = Api(self.config)
        self._lock = threading.RLock()
        self._tracked: dict[str, Tracked] = {}
        self._finished: collections.OrderedDict[str, Tracked] = collections.OrderedDict()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._pods: dict[str, dict[str, Any]] = {}
        self._pods_by_job: dict[str, set[str]] = collections.defaultdict(set)
        self._first_seen: dict[str, float] = {}
        self._unschedulable_said = -UNSCHEDULABLE_SAY_EVERY
        self._watchers: list[Watcher] = []
        self._log = get_logger(cluster=self.config.label)

    @property
    def settings(self) -> manifest.Settings:
        return self.api.settings

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    # -- the Backend interface -----------------------------------------------------------------

    def check(self) -> str:
        version = self.api.version()
        self.api.request("list jobs", self.api.batch.list_namespaced_job, self.namespace, limit=1)
        return f"Kubernetes {version} at {self.api.host}, namespace {self.namespace}"

    def submit(self, jobs: Sequence[StagedJob], chunksize: int | None = None) -> list[str]:
        """One Secret (or more, for a large payload) and one Job per call, whatever ``chunksize`` says.

        A call that waits for unfinished jobs is held here, its Job created once they completed.
        """
        for job in jobs:
            _refuse_unsupported(job)
        held = [(job, self._upstreams(job)) for job in jobs if job.after]
        prepared = [(job, *self._prepare(job)) for job in jobs if not job.after]
        self._ensure_watching()
        now = time.monotonic()
        with self._lock:
            for job, name, _, _ in prepared:
                self._tracked[name] = Tracked(name=name, key=job.key, directory=job.directory, created=now)
        pool = self.api.pool
        futures = [pool.submit(self._create, name, secrets, body) for _, name, secrets, body in prepared]
        concurrent.futures.wait(futures)
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            # All or nothing: the session removes the job directories and raises; nothing may run.
            created = [name for (_, name, _, _), f in zip(prepared, futures, strict=True) if f.exception() is None]
            list(pool.map(lambda n: self._delete(n, "Background"), created))
            with self._lock:
                for _, name, _, _ in prepared:
                    self._tracked.pop(name, None)
            error = errors[0]
            if isinstance(error, ClustrixError):
                raise error
            raise SubmissionError(f"{self.config.label}: creating the Jobs failed: {type(error).__name__}: {error}")
        now = time.monotonic()
        with self._lock:
            for job, upstreams in held:
                name = manifest.job_name(job.spec, job.key)
                waiting = ", ".join(u.name for u in upstreams)
                self._tracked[name] = Tracked(
                    name=name,
                    key=job.key,
                    directory=job.directory,
                    created=now,
                    status=JobStatus(JobState.PENDING, reason=f"waiting for {waiting}"),
                    held=job,
                    upstreams=upstreams,
                )
        self._log.debug("jobs created", jobs=len(prepared), held=len(held), namespace=self.namespace)
        return [manifest.job_name(job.spec, job.key) for job in jobs]

    def _prepare(
        self, job: StagedJob, payload: bytes | None = None
    ) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
        """The Job's name, its Secrets and its manifest, from the call staged in its directory
        (``payload``: the call to send instead of the staged one)."""
        settings = self.settings
        files = {"key": self.transport.read_file(f"{job.directory}/key"), "runner.py": RUNNER_SOURCE}
        files["payload.pkl"] = payload or self.transport.read_file(f"{job.directory}/payload.pkl")
        files["emit.py"] = EMIT_SOURCE
        archive = self._serializer_archive(_serializer_of(files["payload.pkl"]))
        if archive is not None:
            files[manifest.SERIALIZER_ZIP] = archive
        name = manifest.job_name(job.spec, job.key)
        labels = manifest.labels(settings, self.client_id, name)
        secrets = manifest.secrets(name, settings.namespace, labels, files, settings.max_payload_secrets)
        names = [s["metadata"]["name"] for s in secrets]
        body = manifest.job(job.spec, job.key, name, settings, self.client_id, names, serializer=archive is not None)
        return name, secrets, body

    def _upstreams(self, job: StagedJob) -> tuple[Tracked, ...]:
        """The jobs a held call waits for: this client's own, or it could never learn that they ended."""
        with self._lock:
            found = {job_id: self._tracked.get(job_id) or self._finished.get(job_id) for job_id in job.after}
        unknown = [job_id for job_id, tracked in found.items() if tracked is None]
        if unknown:
            raise SubmissionError(
                f"the call to {job.spec.name!r} waits for {', '.join(unknown)}, which this client does not follow; "
                "pass its value instead"
            )
        return tuple(tracked for tracked in found.values() if tracked is not None)

    def _release(self, name: str, tracked: Tracked) -> None:
        """Create a held call's Job once every job it waits for completed; end it if one did not."""
        with self._lock:
            if tracked.releasing:
                return
            ended = [u for u in tracked.upstreams if u.collected]
            failed = next((u for u in ended if u.status.state is not JobState.COMPLETED), None)
            if failed is None and len(ended) < len(tracked.upstreams):
                return
            tracked.releasing = True
        if failed is not None:
            reason = f"job {failed.name} it waits for ended {failed.status.state.value}"
            self._finish(name, tracked, JobStatus(JobState.CANCELLED, reason=reason))
        else:
            self.api.pool.submit(self._create_held, name, tracked)

    def _create_held(self, name: str, tracked: Tracked) -> None:
        assert tracked.held is not None
        try:
            payload = upstream.payload_with_values(self.transport, tracked.directory)
            _, secrets, body = self._prepare(tracked.held, payload)
            self._create(name, secrets, body)
        except Exception as exc:  # noqa: BLE001 - the call must end, with why
            reason = f"the jobs it waited for completed, but creating its Job failed: {type(exc).__name__}: {exc}"
            self._finish(name, tracked, JobStatus(JobState.FAILED, reason=reason))
            return
        with self._lock:
            tracked.held = None
            tracked.upstreams = ()
            tracked.created = time.monotonic()
            cancelled = tracked.cancelled
        if cancelled:
            self._delete(name, self.settings.cancel_propagation)
            self._finish(name, tracked, JobStatus(JobState.CANCELLED, reason="cancelled while its Job was created"))

    def _create(self, name: str, secrets: list[dict[str, Any]], body: dict[str, Any]) -> None:
        ns = self.namespace
        made: list[str] = []
        try:
            for secret in secrets:
                self.api.request(
                    "create secret", self.api.core.create_namespaced_secret, ns, secret, error=SubmissionError
                )
                made.append(secret["metadata"]["name"])
            _, created = self.api.request(
                "create job", self.api.batch.create_namespaced_job, ns, body, error=SubmissionError
            )
        except BaseException:
            for secret_name in made:
                self.api.request_quietly("delete secret", self.api.core.delete_namespaced_secret, secret_name, ns)
            raise
        patch = manifest.owner_patch(created)
        for secret_name in made:
            try:
                self.api.request("own secret", self.api.core.patch_namespaced_secret, secret_name, ns, patch)
            except ClustrixError as exc:
                # The Job runs all the same; its Secrets are then deleted by name when it is.
                self._log.warning("could not make the Job own its Secret", job_id=name, error=str(exc))
                with self._lock:
                    if name in self._tracked:
                        self._tracked[name].owned = False

    @functools.cache  # noqa: B019 - one archive per serializer for the backend's life
    def _serializer_archive(self, name: str) -> bytes | None:
        """The serializer's own pure-Python source, zipped, so the pod unpickles with the client's version.

        cloudpickle's pickles of functions need the same cloudpickle on both sides; images
        carry whichever their distribution ships. None (the image's module is used) for a
        module of the standard library, one with compiled parts, or with ship_serializer = false.
        """
        if not self.settings.ship_serializer:
            return None
        try:
            module = importlib.import_module(name)
        except ImportError:
            return None
        origin = pathlib.Path(getattr(module, "__file__", None) or "/")
        stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
        if origin.is_relative_to(stdlib) and "site-packages" not in origin.parts:
            return None
        if hasattr(module, "__path__"):
            root = origin.parent
            sources = [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
            if any(p.suffix not in (".py", ".typed") for p in sources):
                return None
            members = {f"{name.split('.')[0]}/{p.relative_to(root)}": p for p in sources}
        elif origin.suffix == ".py":
            members = {origin.name: origin}
        else:
            return None
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for arcname, path in sorted(members.items()):
                info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
        data = buffer.getvalue()
        return data if len(data) <= manifest.SERIALIZER_LIMIT else None

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """From the watch's cache: no API request, however many jobs (jobs of other clients excepted)."""
        self._ensure_watching()
        statuses: dict[str, JobStatus] = {}
        foreign = []
        with self._lock:
            for job_id in job_ids:
                tracked = self._tracked.get(job_id) or self._finished.get(job_id)
                if tracked is None:
                    foreign.append(job_id)
                elif tracked.collected:
                    statuses[job_id] = tracked.status
            waiting = [job_id for job_id in job_ids if job_id not in statuses and job_id not in foreign]
        if waiting:
            broken = [w for w in self._watchers if not w.healthy and w.error]
            if broken:
                raise BackendUnavailableError(
                    f"{self.config.label}: the watch of {broken[0].kind} in namespace {self.namespace} is broken "
                    f"({broken[0].error}); retrying"
                )
            for job_id in waiting:
                self._refresh(job_id)
            with self._lock:
                for job_id in waiting:
                    statuses[job_id] = (
                        self._tracked[job_id].status if job_id in self._tracked else self._finished[job_id].status
                    )
        for job_id in foreign:
            statuses[job_id] = self._direct_status(job_id)
        return statuses

    def follow(self, job_ids: Sequence[str]) -> None:
        """Jobs another client created (it died): relabelled as this client's, pods first, so this
        client's watch follows them, and it collects and cleans them up as its own. The relabelled
        objects go into the cache at once: a Job that already ended is collected with its pod."""
        self._ensure_watching()
        relabel = {"metadata": {"labels": {manifest.CLIENT_LABEL: self.client_id}}}
        for name in job_ids:
            code, job = self.api.request(
                "read job", self.api.batch.read_namespaced_job, name, self.namespace, ok=(404,)
            )
            if code == 404:
                continue  # gone: the poll says so
            key = (job["metadata"].get("annotations") or {}).get(manifest.KEY_ANNOTATION)
            if not key:
                continue  # not a clustrix Job: the poll reports it as any other client's
            ns, selector = self.namespace, f"{manifest.JOB_LABEL}={name}"
            _, pods = self.api.request("list pods", self.api.core.list_namespaced_pod, ns, label_selector=selector)
            relabelled = []
            for pod in pods.get("items") or []:
                if status.owned_by(pod, job):
                    code, pod = self.api.request(
                        "relabel pod",
                        self.api.core.patch_namespaced_pod,
                        pod["metadata"]["name"],
                        self.namespace,
                        relabel,
                        ok=(404,),
                    )
                    if code != 404:
                        relabelled.append(pod)
            code, job = self.api.request(
                "relabel job", self.api.batch.patch_namespaced_job, name, self.namespace, relabel, ok=(404,)
            )
            if code == 404:
                continue
            with self._lock:
                self._jobs[name] = job
                for pod in relabelled:
                    self._pods[pod["metadata"]["name"]] = pod
                    self._pods_by_job[name].add(pod["metadata"]["name"])
                # Its Secrets may not belong to it (ownerReferences): cleaning deletes them by name.
                tracked = Tracked(name, key, self.job_directory(key), created=time.monotonic(), owned=False)
                tracked.seen = True
                self._tracked.setdefault(name, tracked)
            self._refresh(name)

    def cancel(self, job_ids: Sequence[str]) -> None:
        targets, never_created = [], []
        with self._lock:
            for job_id in job_ids:
                tracked = self._tracked.get(job_id)
                if job_id in self._finished or (tracked and (tracked.collecting or tracked.collected)):
                    continue
                if tracked:
                    tracked.cancelled = True
                    if tracked.held is not None:
                        # Its Job, being created now, is deleted once it is (_create_held).
                        if not tracked.releasing:
                            tracked.releasing = True
                            never_created.append(tracked)
                        continue
                targets.append(job_id)
        for tracked in never_created:
            self._finish(tracked.name, tracked, JobStatus(JobState.CANCELLED, reason="cancelled before it was created"))
        policy = self.settings.cancel_propagation
        list(self.api.pool.map(lambda name: self._delete(name, policy, strict=True), targets))

    def close(self) -> None:
        for watcher in self._watchers:
            watcher.stop()
        self.api.close()

    # -- watching ------------------------------------------------------------------------------

    def _ensure_watching(self) -> None:
        with self._lock:
            if self._watchers:
                return
            selector = manifest.selector(self.client_id)
            ns = self.namespace
            self._watchers = [
                Watcher(
                    "jobs",
                    lambda **kw: self.api.batch.list_namespaced_job(ns, label_selector=selector, **kw),
                    self._reset_jobs,
                    self._job_event,
                    self.api.count,
                ),
                Watcher(
                    "pods",
                    lambda **kw: self.api.core.list_namespaced_pod(ns, label_selector=selector, **kw),
                    self._reset_pods,
                    self._pod_event,
                    self.api.count,
                ),
            ]
            for watcher in self._watchers:
                watcher.start()

    def _reset_jobs(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            self._jobs = {item["metadata"]["name"]: item for item in items}
            for name in self._jobs:
                if name in self._tracked:
                    self._tracked[name].seen = True
            names = list(self._tracked)
        for name in names:
            self._refresh(name)

    def _reset_pods(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            self._pods = {item["metadata"]["name"]: item for item in items}
            self._pods_by_job = collections.defaultdict(set)
            for pod_name, pod in self._pods.items():
                self._pods_by_job[_job_of(pod)].add(pod_name)
            names = list(self._tracked)
        for name in names:
            self._refresh(name)

    def _job_event(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            if kind == "DELETED":
                self._jobs.pop(name, None)
            else:
                self._jobs[name] = obj
            if name in self._tracked:
                self._tracked[name].seen = True
        self._refresh(name)

    def _pod_event(self, kind: str, obj: dict[str, Any]) -> None:
        pod_name, job = obj["metadata"]["name"], _job_of(obj)
        with self._lock:
            if kind == "DELETED":
                self._pods.pop(pod_name, None)
                self._pods_by_job[job].discard(pod_name)
                if not self._pods_by_job[job]:
                    del self._pods_by_job[job]
            else:
                self._pods[pod_name] = obj
                self._pods_by_job[job].add(pod_name)
        self._refresh(job)

    def _since(self, what: str) -> float:
        now = time.monotonic()
        return now - self._first_seen.setdefault(what, now)

    def _current(self, name: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The Job, and the pods its controller made for it: matched by the Job's uid, not by labels
        (which any pod may carry)."""
        with self._lock:
            job = self._jobs.get(name)
            pods = [self._pods[p] for p in self._pods_by_job.get(name, ()) if p in self._pods]
        return job, [pod for pod in pods if job is not None and status.owned_by(pod, job)]

    def _refresh(self, name: str) -> None:
        """Work out one tracked job's state from the cache; hand a job that ended to a collector."""
        settings = self.settings
        with self._lock:
            tracked = self._tracked.get(name)
            if tracked is None or tracked.collecting or tracked.collected:
                return
            held = tracked.held is not None
        if held:
            self._release(name, tracked)
            return
        with self._lock:
            job, pods = self._current(name)
            if job is None and not tracked.seen:
                if time.monotonic() - tracked.created < UNSEEN_CHECK or time.monotonic() - tracked.checked < 10:
                    return
                tracked.checked = time.monotonic()
                unseen = True
            else:
                unseen = False
        if unseen:
            # Not in the watch's cache long after its creation: ask for it by name.
            code, job = self.api.request(
                "read job", self.api.batch.read_namespaced_job, name, self.namespace, ok=(404,)
            )
            if code != 404:
                with self._lock:
                    tracked.seen = True
                    self._jobs.setdefault(name, job)
                return
        new = status.job_status(
            job,
            pods,
            cancelled=tracked.cancelled,
            since=self._since,
            container_error_grace=settings.container_error_grace,
            unschedulable_timeout=settings.unschedulable_timeout,
        )
        with self._lock:
            if tracked.collecting or tracked.collected:
                return
            if new.state.finished:
                tracked.collecting = True
                tracked.final_job = job
                tracked.final_pod = status.latest_pod(pods)
            else:
                changed = new != tracked.status
                if changed and new.reason.startswith("Unschedulable"):
                    # Waiting for room is queueing; say so now and then, not once per job of a large map.
                    now = time.monotonic()
                    quiet = now - self._unschedulable_said < UNSCHEDULABLE_SAY_EVERY
                    say = self._log.debug if quiet else self._log.warning
                    say("job is unschedulable", job_id=name, reason=new.reason)
                    if not quiet:
                        self._unschedulable_said = now
                tracked.status = new
        if new.state.finished:
            self.api.pool.submit(self._collect, name, new)
        elif changed:
            self._notify()

    def _notify(self) -> None:
        callback = self.on_change
        if callback is not None:
            try:
                callback()
            except Exception as exc:  # noqa: BLE001 - a broken observer must not stop the watch
                self._log.warning("on_change callback failed", error=str(exc))

    # -- collecting a job that ended -----------------------------------------------------------

    def _collect(self, name: str, final: JobStatus) -> None:
        """Read the pod's log into the job's directory, then clean up; only then does ``poll`` report the end."""
        with self._lock:
            tracked = self._tracked[name]
        try:
            final = self._read_end_again(name, tracked, final)
        except Exception as exc:  # noqa: BLE001 - the end as first seen still stands
            self._log.warning("could not read the pod's end", job_id=name, error=f"{type(exc).__name__}: {exc}")
        try:
            final = self._fetch_files(tracked, final)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the job must still end
            self._log.warning("could not read the job's log", job_id=name, error=f"{type(exc).__name__}: {exc}")
            final = attrs.evolve(final, reason=_join(final.reason, f"its log could not be read: {exc}"))
        try:
            self._clean_up(name, tracked, final)
        except Exception as exc:  # noqa: BLE001 - the job must still end: what is left is only named
            self._log.warning("could not delete the job's objects", job_id=name, error=f"{type(exc).__name__}: {exc}")
        self._finish(name, tracked, final)

    def _finish(self, name: str, tracked: Tracked, final: JobStatus) -> None:
        """The job's end, now that nothing is left to do for it: ``poll`` reports it."""
        with self._lock:
            tracked.status = final
            tracked.collected = True
            tracked.upstreams = ()
            self._tracked.pop(name, None)
            self._finished[name] = tracked
            while len(self._finished) > REMEMBERED:
                self._finished.popitem(last=False)
            self._first_seen = {k: v for k, v in self._first_seen.items() if not k.startswith(f"{name}-")}
        self._notify()

    def _clean_up(self, name: str, tracked: Tracked, final: JobStatus) -> None:
        """Delete the Job (and its pods) and its Secrets, as the delete_jobs policy says."""
        policy = self.settings.delete_jobs
        # A Job this client gave up on (its container cannot start, its pod cannot be placed) would
        # wait forever, holding what it asked of its node: it goes whatever the policy says.
        given_up = final.state is JobState.FAILED and not status.ended(tracked.final_job)
        if given_up or policy == "always" or (policy == "on_success" and final.state is JobState.COMPLETED):
            if final.state is not JobState.CANCELLED:
                self._delete(name, "Background")
            if not tracked.owned:
                for index in range(self.settings.max_payload_secrets):
                    code, _ = self.api.request_quietly(
                        "delete secret",
                        self.api.core.delete_namespaced_secret,
                        manifest.secret_name(name, index),
                        self.namespace,
                    )
                    if code == 404:
                        break

    def _read_end_again(self, name: str, tracked: Tracked, final: JobStatus) -> JobStatus:
        """The Job's end can reach the watch before its pod's: then the end was read without the
        container's exit code or its OOMKilled. Once the pod has ended too, it is read again."""
        pod = tracked.final_pod
        if pod is None or final.state in (JobState.CANCELLED, JobState.TIMEOUT) or status.terminated(pod):
            return final
        if status.container_status(pod) is None or not status.ended(tracked.final_job):
            # The container never started, or this client gave up on a Job that has not ended
            # (a container that cannot start): there is no end of the pod's to wait for.
            return final
        pod = self._settled_pod(pod)
        tracked.final_pod = pod
        with self._lock:
            pods = [p for p in self._current(name)[1] if p["metadata"]["name"] != pod["metadata"]["name"]]
        again = status.job_status(tracked.final_job, [*pods, pod], cancelled=tracked.cancelled)
        return again if again.state.finished else final

    def _fetch_files(self, tracked: Tracked, final: JobStatus) -> JobStatus:
        pod = tracked.final_pod
        if pod is None or final.state is JobState.CANCELLED or status.container_status(pod) is None:
            return final  # the container never started, or is gone with its Job: there is no log
        pod_name = pod["metadata"]["name"]
        code, data = self.api.request(
            "read log",
            self.api.core.read_namespaced_pod_log,
            pod_name,
            self.namespace,
            container=manifest.CONTAINER,
            limit_bytes=MAX_LOG_BYTES,
            ok=(400, 404),
            raw=True,
            _request_timeout=(10, 300),
        )
        if code in (400, 404):
            return attrs.evolve(final, reason=_join(final.reason, f"the log of pod {pod_name} is gone"))
        frames = framing.parse(data.decode("utf-8", errors="replace"), tracked.key)
        files = {name: frames.files[name] for name in ("result.pkl", "meta.json", "stdout") if name in frames.files}
        stderr = frames.files.get("stderr", b"")
        if frames.other:
            # What the container said outside the call (setup lines, an interpreter that would not start).
            stderr = frames.other.encode() + b"\n" + stderr
        if stderr:
            files["stderr"] = stderr
        if files:
            self.transport.write_files({f"{tracked.directory}/{k}": v for k, v in files.items()}, 0o600)
        problem = frames.describe() if frames.files or frames.problems else ""
        if problem:
            self._log.warning("the job's log frames are damaged", job_id=tracked.name, problem=problem)
            final = attrs.evolve(final, reason=_join(final.reason, f"log frames: {problem}"))
        return final

    def _settled_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        """The pod once the watch has its end (the Job's end may arrive first); asked for directly at worst."""
        name = pod["metadata"]["name"]
        deadline = time.monotonic() + 3.0
        while status.terminated(pod) is None and time.monotonic() < deadline:
            time.sleep(0.05)
            with self._lock:
                pod = self._pods.get(name, pod)
        if status.terminated(pod) is None:
            code, fresh = self.api.request(
                "read pod", self.api.core.read_namespaced_pod, name, self.namespace, ok=(404,)
            )
            if code != 404:
                pod = fresh
        return pod

    def _delete(self, name: str, propagation: str, strict: bool = False) -> None:
        body = {"propagationPolicy": propagation}
        if strict:
            self.api.request(
                "delete job", self.api.batch.delete_namespaced_job, name, self.namespace, body=body, ok=(404,)
            )
        else:
            self.api.request_quietly(
                "delete job", self.api.batch.delete_namespaced_job, name, self.namespace, body=body
            )

    def _direct_status(self, name: str) -> JobStatus:
        """A job this client did not submit (``clustrix jobs``): asked for by name."""
        code, job = self.api.request("read job", self.api.batch.read_namespaced_job, name, self.namespace, ok=(404,))
        if code == 404:
            return JobStatus(JobState.UNKNOWN, reason=f"no Job {name} in namespace {self.namespace}")
        _, pods = self.api.request(
            "list pods",
            self.api.core.list_namespaced_pod,
            self.namespace,
            label_selector=f"{manifest.JOB_LABEL}={name}",
        )
        return status.job_status(job, [pod for pod in pods.get("items") or [] if status.owned_by(pod, job)])

    # -- the validator's questions -----------------------------------------------------------------

    def _record(self, job_id: str) -> Tracked | None:
        with self._lock:
            return self._tracked.get(job_id) or self._finished.get(job_id)

    def knows(self, job_id: str) -> bool:
        """The API server has the Job, or had it until this client collected and deleted it."""
        tracked = self._record(job_id)
        if tracked is not None and (tracked.seen or tracked.collected or tracked.held is not None):
            return True
        code, _ = self.api.request("read job", self.api.batch.read_namespaced_job, job_id, self.namespace, ok=(404,))
        return code != 404

    def _pod_of(self, job_id: str) -> dict[str, Any] | None:
        tracked = self._record(job_id)
        if tracked is not None and tracked.final_pod is not None:
            return tracked.final_pod
        return status.latest_pod(self._current(job_id)[1])

    def job_in_queue(self, job_id: str) -> bool | None:
        return self.knows(job_id)

    def job_allocation(self, job_id: str, meta: Mapping[str, Any] | None) -> Allocation | None:
        """From the pod's spec as the API server stored it: its container's limits, its node, and the
        time limit its runner was given."""
        pod = self._pod_of(job_id)
        if pod is None:
            return None
        cores, memory = status.allocated(pod)
        node = pod.get("spec", {}).get("nodeName")
        return Allocation(cores=cores, memory=memory, time_limit=status.time_limit(pod), nodes=(node,) if node else ())

    def job_metrics(self, job_id: str, meta: Mapping[str, Any] | None) -> JobMetrics | None:
        """Times and exit code from the pod's status; peak memory from the runner's own record."""
        pod = self._pod_of(job_id)
        if pod is None:
            return None
        ended = status.terminated(pod) or {}
        cores, memory = status.allocated(pod)
        tracked = self._record(job_id)
        seen = tracked.status if tracked else JobStatus(JobState.UNKNOWN)
        created = ((tracked.final_job if tracked else None) or {}).get("metadata", {}).get("creationTimestamp")
        node = pod.get("spec", {}).get("nodeName")
        return JobMetrics(
            job_id=job_id,
            backend=self.config.backend,
            state=seen.state.value,
            submitted_at=status.timestamp(created),
            started_at=status.timestamp(ended.get("startedAt") or pod.get("status", {}).get("startTime")),
            ended_at=status.timestamp(ended.get("finishedAt")),
            exit_code=ended.get("exitCode", seen.exit_code),
            nodes=(node,) if node else (),
            allocated_cores=cores,
            allocated_memory=memory,
            peak_memory=((meta or {}).get("limits") or {}).get("peak_rss"),
            source="kubernetes",
        )


def _refuse_unsupported(job: StagedJob) -> None:
    asked = job.spec.resources
    problems = []
    if asked.queue or asked.account or asked.extra:
        problems.append("queue, partition, account and extra have no meaning here (use node_selector, tolerations)")
    if problems:
        raise SubmissionError(f"the kubernetes backend cannot run the call to {job.spec.name!r}: {'; '.join(problems)}")
    if any("\0" in value for _, value in job.spec.env):
        raise ConfigError("env: a value holds a NUL byte, which no process environment can carry")


def _serializer_of(payload: bytes) -> str:
    """The serializer named in a payload's envelope header (clustrix/runner.py's format)."""
    start = len(runner.MAGIC) + 4
    length = int.from_bytes(payload[len(runner.MAGIC) : start], "big")
    return json.loads(payload[start : start + length])["serializer"]


def _job_of(pod: Mapping[str, Any]) -> str:
    return (pod.get("metadata", {}).get("labels") or {}).get(manifest.JOB_LABEL, "")


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)
