"""A connection to one cluster: stage, submit, watch, fetch. One session per distinct ClusterConfig.

A job's life here: serialize every call of the batch (refusing before anything is
written), stage each job directory (0700) through the transport, submit the batch
to the backend in one call, let the monitor watch it, and on its end resolve the
future from the result file, fire the events, and clean the directory by policy.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import copy
import json
import secrets
import threading
import uuid
from collections.abc import Sequence

from clustrix import plugins, retries, runner
from clustrix.backend import StagedJob
from clustrix.config import ClusterConfig
from clustrix.errors import (
    BackendUnavailableError,
    ClustrixError,
    ConfigError,
    DependencyFailedError,
    JobCancelledError,
    SerializationError,
)
from clustrix.job import ClusterFuture, Job
from clustrix.log import get_logger
from clustrix.monitor import Monitor
from clustrix.results import Outcome, outcome
from clustrix.spec import JobSpec, spec_from_record
from clustrix.state import JobState, JobStatus
from clustrix.transport import FileRead
from clustrix.version import __version__

STDERR_TAIL_BYTES = 4000
OUTPUT_CAPTURE_BYTES = 1024**2


# The call file is authenticated with a key kept beside it, so only the directories' modes keep
# another user from swapping in a call of their own. The workdir must not be a symlink, and no
# other user may write to it, sticky or not (they could plant entries under guessable names). Up
# to the root, every existing level must belong to this user or root and be writable by no one
# else (a sticky directory such as /tmp excepted: there others cannot rename what is ours); a
# level that is a symlink must belong to this user or root too (another's could be repointed),
# and the path it leads to is checked the same way. Prints the first offending level and why.
_PRIVATE_WORKDIR = """
me=$(id -u)
if [ -L "$1" ]; then echo "symlink $1"; exit 3; fi
top=$1
for p in "$1" "$(readlink -m -- "$1")"; do
  while :; do
    if [ -L "$p" ]; then
      o=$(stat -c %u -- "$p") || exit 4
      if [ "$o" != "$me" ] && [ "$o" != 0 ]; then echo "owner $p $o"; exit 3; fi
    elif [ -e "$p" ]; then
      set -- $(stat -c '%u %a' -- "$p") || exit 4
      if [ "$1" != "$me" ] && [ "$1" != 0 ]; then echo "owner $p $1"; exit 3; fi
      m=$((0$2))
      if [ $((m & 18)) -ne 0 ] && { [ $((m & 512)) -eq 0 ] || [ "$p" = "$top" ]; }; then
        echo "writable $p $2"; exit 3
      fi
    fi
    [ "$p" = / ] && break
    p=$(dirname -- "$p")
  done
done
exit 0
"""


class ClusterSession:
    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.transport = plugins.transport_class(config.transport)(config)
        self.backend = plugins.backend_class(config.backend)(config, self.transport)
        self.monitor = Monitor(self)
        self.backend.on_change = self.monitor.nudge
        # Keyed by job key: calls chunked into one scheduler task share its job id.
        self._futures: dict[str, ClusterFuture] = {}
        self._lock = threading.Lock()
        self._workdir_checked = False
        self._log = get_logger(cluster=config.label)
        self._hook = plugins.plugin_manager().hook

    # -- submission -------------------------------------------------------------------

    def check_workdir(self) -> None:
        """Refuse a workdir another user could write to (see ``_PRIVATE_WORKDIR``); asked once per session."""
        with self._lock:
            if self._workdir_checked:
                return
        workdir = self.backend.workdir
        result = self.transport.run(["sh", "-c", _PRIVATE_WORKDIR, "sh", workdir])
        if result.returncode == 3:
            what, _, detail = result.stdout.strip().partition(" ")
            path, _, value = detail.rpartition(" ") if what != "symlink" else (detail, "", "")
            why = {
                "symlink": "is a symbolic link",
                "owner": f"belongs to another user (uid {value})",
                "writable": f"is writable by group or others (mode {value})",
            }[what]
            raise ConfigError(
                f"workdir {workdir!r}: {path} {why}; another user could replace a job's call file and run "
                "code as you. Use a directory only you (or root) can write to"
            )
        result.check(BackendUnavailableError, f"checking workdir {workdir}")
        with self._lock:
            self._workdir_checked = True

    def submit(self, specs: Sequence[JobSpec], chunksize: int | None = None) -> list[ClusterFuture]:
        for spec in specs:
            self._check_tasks(spec)
        if any(spec.checkpointable for spec in specs):
            chunksize = self._checkpointable(specs, chunksize)
        self.check_workdir()
        serializer = plugins.serializer()
        workdir = self.backend.workdir
        staged, keys, files, upstreams = [], [], {}, []
        try:
            for spec in specs:
                key = uuid.uuid4().hex
                hmac_key = secrets.token_bytes(32)
                directory = f"{workdir}/{key}"
                call, waits_for, reads_from = self._dependencies(spec)
                upstreams.append((waits_for, reads_from))
                files[f"{directory}/{runner.PAYLOAD_FILE}"] = self._pack_call(spec, call, hmac_key, serializer)
                files[f"{directory}/{runner.KEY_FILE}"] = hmac_key.hex().encode()
                after = tuple(dict.fromkeys(job.job_id for job in waits_for))
                staged.append(StagedJob(key=key, directory=directory, spec=spec, after=after))
                keys.append(hmac_key)
            self.transport.make_dirs([job.directory for job in staged], 0o700)
            self.transport.write_files(files, 0o600)
            try:
                job_ids = self.backend.submit(staged, chunksize=chunksize)
            except BaseException:
                self.transport.remove_trees([job.directory for job in staged])
                raise
        except BaseException:
            for _, reads_from in upstreams:
                self._release(reads_from)
            raise
        jobs = [
            Job(
                key=s.key,
                job_id=job_id,
                directory=s.directory,
                spec=s.spec,
                session=self,
                hmac_key=hmac_key,
                reads_from=tuple(reads_from),
                waits_for=tuple(waits_for),
            )
            for s, job_id, hmac_key, (waits_for, reads_from) in zip(staged, job_ids, keys, upstreams, strict=True)
        ]
        futures = [ClusterFuture(job) for job in jobs]
        for future in futures:
            future.batch = futures
        with self._lock:
            self._futures.update((job.key, fut) for job, fut in zip(jobs, futures, strict=True))
        for job in jobs:
            self._log.info("job submitted", job_id=job.job_id, key=job.key, name=job.spec.name)
            self._fire("clustrix_job_submitted", job=job)
        self.monitor.watch(jobs)
        return futures

    def _check_tasks(self, spec: JobSpec) -> None:
        """Refuse a call on several tasks where the backend would run it only once."""
        tasks = spec.resources.tasks
        if tasks > 1 and not self.backend.runs_tasks:
            able = ", ".join(sorted(name for name, cls in plugins.backends().items() if cls.runs_tasks)) or "none"
            raise ConfigError(
                f"nodes={spec.resources.nodes}, tasks_per_node={spec.resources.tasks_per_node}: the call to "
                f"{spec.name!r} would run on {tasks} tasks, but backend {self.config.backend!r} runs a call "
                f"only once (backends that run a call on every task: {able}); nothing was submitted"
            )

    def _checkpointable(self, specs: Sequence[JobSpec], chunksize: int | None) -> int:
        """Checkpointable calls each run as a job of their own (it is what is submitted again): chunksize 1."""
        spec = specs[0]
        if not self.backend.resumes_checkpoints:
            raise ConfigError(
                f"{spec.name!r} has a checkpoint method, but the {self.config.backend} backend cannot resume "
                "a checkpoint (its jobs' files do not outlive them)"
            )
        if spec.resources.tasks > 1:
            raise ConfigError(f"{spec.name!r} has a checkpoint method: a checkpointable call runs on one task")
        if chunksize not in (None, 1):
            raise ConfigError(f"chunksize={chunksize}: checkpointable calls each run as a job of their own")
        at = spec.checkpoint_at()
        if at is not None and at <= 0:
            raise ConfigError(
                f"checkpoint_notice={spec.checkpoint_notice}: must be shorter than the time limit "
                f"({spec.resources.time} s)"
            )
        return 1

    def _dependencies(self, spec: JobSpec) -> tuple[dict, list[Job], list[Job]]:
        """The call to pickle, the unfinished jobs it must wait for, and those whose result files it reads.

        A future among the (top-level) arguments whose job already ended passes its value
        directly; an unfinished one becomes a reference to its result file, read by the
        runner, and keeps that job's directory from cleanup until this call has ended.
        """
        args, kwargs = list(spec.args), dict(spec.kwargs)
        upstream: dict[int | str, tuple[str, str, int, str]] = {}
        waits_for: list[Job] = []
        reads_from: list[Job] = []
        try:
            for future in spec.after:
                if self._unfinished(future, spec):
                    waits_for.append(future.job)
            for position, value in [*enumerate(spec.args), *spec.kwargs.items()]:
                if not isinstance(value, ClusterFuture):
                    continue
                if self._unfinished(value, spec, reserve=True):
                    waits_for.append(value.job)
                    reads_from.append(value.job)
                    upstream[position] = (
                        value.job.directory,
                        value.job.hmac_key.hex(),
                        value.job.spec.resources.tasks,
                        value.job.spec.gather,
                    )
                    value = None
                else:
                    value = value.result()
                if isinstance(position, int):
                    args[position] = value
                else:
                    kwargs[position] = value
        except BaseException:
            self._release(reads_from)
            raise
        return {"fn": spec.fn, "args": tuple(args), "kwargs": kwargs, "upstream": upstream}, waits_for, reads_from

    def _unfinished(self, future: ClusterFuture, spec: JobSpec, reserve: bool = False) -> bool:
        """True when ``future``'s job has not ended (with ``reserve``: its directory is kept for us).

        An ended one that failed makes this call impossible: DependencyFailedError, nothing submitted.
        """
        job = future.job
        if job.session is not self:
            raise ConfigError(
                f"the call to {spec.name!r} depends on job {job.job_id} of another cluster "
                f"({job.session.config.label}); dependencies must share one cluster"
            )
        with self._lock:
            if not job.state.finished:
                if job.spec.checkpointable:
                    raise ConfigError(
                        f"the call to {spec.name!r} depends on job {job.job_id}, a checkpointable call that has not "
                        "finished: it may be submitted again under another id, which no scheduler's dependency "
                        "follows. Pass its result once it has finished"
                    )
                if reserve:
                    job.dependants += 1
                return True
        error = future.exception()
        if error is not None:
            raise DependencyFailedError(
                f"not submitted: job {job.job_id} it depends on failed ({type(error).__name__})",
                job_id=job.job_id,
                state=job.state,
            ) from error
        return False

    def _release(self, jobs: Sequence[Job]) -> None:
        """A dependant is done with these jobs' result files; clean those nobody else needs."""
        for job in jobs:
            with self._lock:
                job.dependants -= 1
                clean = job.dependants == 0 and job.clean_when_released
            if clean:
                self._remove_directories([job])

    def _pack_call(self, spec: JobSpec, call: dict, hmac_key: bytes, serializer: str) -> bytes:
        if spec.checkpointable:
            call["requeue"] = {"left": spec.max_requeues, "at": spec.checkpoint_at()}
        try:
            data = runner.pack("call", call, hmac_key, serializer, __version__)
        except Exception as exc:
            raise SerializationError(
                f"cannot serialize the call to {spec.name!r} with {serializer}: {type(exc).__name__}: {exc}; "
                "nothing was submitted"
            ) from exc
        if len(data) > self.config.max_payload_bytes:
            raise SerializationError(
                f"the call to {spec.name!r} serializes to {len(data)} bytes, over max_payload_bytes="
                f"{self.config.max_payload_bytes}; pass large data as files on the cluster instead. "
                "Nothing was submitted"
            )
        return data

    def attach(self, job_id: str, key: str, directory: str, hmac_key: bytes, name: str, record: dict) -> ClusterFuture:
        """A future for a job another client process submitted, from its ``spec_record`` (its
        function is unknown here: a checkpointed call resumes from its job directory)."""
        function = _UnknownCheckpointable() if record["checkpointable"] else _UnknownFunction()
        spec = spec_from_record(record, name, function)
        job = Job(key=key, job_id=job_id, directory=directory, spec=spec, session=self, hmac_key=hmac_key)
        future = ClusterFuture(job)
        with self._lock:
            self._futures[key] = future
        self._log.info("job attached", job_id=job_id, key=key, name=name)
        self.backend.follow([job_id])
        self.monitor.watch([job])
        return future

    # -- what the monitor reports ---------------------------------------------------

    def record(self, job: Job, status: JobStatus) -> bool:
        """Store a poll's status; fire the state-changed event. True when the state changed."""
        old = job.update(status)
        if old is None:
            return False
        self._log.debug("job state changed", job_id=job.job_id, old=old.value, new=status.state.value)
        self._fire("clustrix_job_state_changed", job=job, old=old, new=status.state)
        return True

    def finish(self, jobs: Sequence[Job]) -> list[tuple[Job, BaseException]]:
        """These jobs ended: read their files (one read for all), run each again where its call
        checkpointed or is retried, else fire its event; clean up (one removal for all), then resolve
        their futures. Returns the jobs whose handling failed, with why (the others are unaffected)."""
        failed: list[tuple[Job, BaseException]] = []
        ended: list[tuple[Job, Outcome]] = []
        for job, done in zip(jobs, self._outcomes(jobs), strict=True):
            try:
                requeue = job.requeues < job.spec.max_requeues and not job.cancel_requested
                if done.checkpointed and requeue and job.state is not JobState.CANCELLED:
                    self._requeue(job)
                elif done.exception is not None and retries.should_retry(job, done.exception):
                    self._retry(job, done.exception)
                else:
                    self._fire("clustrix_job_finished", job=job)
                    ended.append((job, done))
            except BaseException as exc:  # noqa: BLE001 - one job's trouble must not lose the others
                failed.append((job, exc))
        self._conclude(ended)
        return failed

    def _outcomes(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Each job's outcome from its files: each rank's meta and result, and its output's tails."""
        reads = [read for job in jobs for read in _reads(job, self.config.max_result_bytes)]
        try:
            found = iter(self.transport.read_files(reads))
        except ClustrixError as exc:
            # Each job its own copy, attributes and cause kept (one exception raised in several
            # callers would gather all their tracebacks).
            return [Outcome(False, exception=_copy_of(exc)) for _ in jobs]
        outcomes = []
        for job in jobs:
            metas = [next(found) for _ in _ranks(job)]
            results = [next(found) for _ in _ranks(job)]
            job.stdout_text, job.stderr_text = ((next(found) or b"").decode(errors="replace") for _ in range(2))
            job.metas = [_meta(data) for data in metas]
            too_large = next((result for result in results if isinstance(result, ClustrixError)), None)
            if too_large is not None:
                outcomes.append(Outcome(False, exception=too_large))
                continue
            if job.state is JobState.UNKNOWN and all(result is not None for result in results):
                # Gone from the queue, but the runner's own record says it ran to the end.
                job.update(JobStatus(JobState.COMPLETED, reason="resolved from the job's result file"))
            outcomes.append(outcome(job, results, job.stderr_text[-STDERR_TAIL_BYTES:].strip()))
        return outcomes

    def _conclude(self, ended: Sequence[tuple[Job, Outcome]]) -> None:
        """These jobs' last runs ended and their events fired: clean up by the policy, resolve their futures."""
        clean = []
        for job, done in ended:
            wanted = self.config.should_clean(done.ok)
            with self._lock:
                # Jobs still to run read this job's result file: they clean it when they are done.
                job.clean_when_released = wanted and job.dependants > 0
                if wanted and job.dependants == 0:
                    clean.append(job)
        self._remove_directories(clean)
        for job, done in ended:
            self._release(job.reads_from)
            self._settle(job, done)

    def _requeue(self, job: Job) -> None:
        """The call checkpointed: submit its job again, to resume from the checkpoint in its directory."""
        previous = job.job_id
        try:
            job.job_id = self.backend.rerun(previous, StagedJob(key=job.key, directory=job.directory, spec=job.spec))
        except ClustrixError as exc:
            exc.add_note(f"the call checkpointed in job {previous}, but submitting it again failed")
            self._settle(job, Outcome(False, exception=exc))
            return
        job.requeues += 1
        job.stdout_text = job.stderr_text = None
        self.record(job, JobStatus(JobState.REQUEUED, reason=f"checkpointed in job {previous}"))
        self._log.info("job requeued", job_id=job.job_id, previous=previous, requeues=job.requeues)
        self._fire("clustrix_job_requeued", job=job, previous_job_id=previous)
        self.monitor.watch([job])

    def _retry(self, job: Job, error: BaseException) -> None:
        """The call failed for a reason outside it (or one its ``retry_on`` names): run it again
        after the backoff, from the same job directory (its output goes on after the last run's)."""
        job.retries += 1
        wait = retries.delay(job.retries)
        said = str(error).splitlines()[0] if str(error) else ""
        reason = f"retry {job.retries} of {job.spec.retries} in {wait:g} s after {type(error).__name__}: {said}"
        self.record(job, JobStatus(JobState.REQUEUED, reason=reason))
        self._log.warning("job failed, retrying", job_id=job.job_id, retry=job.retries, error=type(error).__name__)
        timer = threading.Timer(wait, self._run_again, args=(job, error))
        timer.daemon = True
        timer.start()

    def _run_again(self, job: Job, error: BaseException) -> None:
        previous = job.job_id
        if job.cancel_requested:
            self.record(job, JobStatus(JobState.CANCELLED, reason="cancelled before its retry ran"))
            self._fire("clustrix_job_finished", job=job)
            self._conclude([(job, Outcome(False, exception=JobCancelledError("cancelled", job_id=previous)))])
            return
        try:
            job.job_id = self.backend.rerun(previous, StagedJob(key=job.key, directory=job.directory, spec=job.spec))
        except ClustrixError as exc:
            exc.add_note(f"the call failed in job {previous} ({type(error).__name__}), and running it again failed")
            self._fire("clustrix_job_finished", job=job)
            self._conclude([(job, Outcome(False, exception=exc))])
            return
        job.stdout_text = job.stderr_text = None
        self._log.info("job retried", job_id=job.job_id, previous=previous, retry=job.retries)
        self._fire("clustrix_job_retried", job=job, previous_job_id=previous, error=error)
        self.monitor.watch([job])

    def _remove_directories(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        try:
            self.transport.remove_trees([job.directory for job in jobs])
        except Exception as exc:  # noqa: BLE001 - a directory left behind must not lose the job's result
            self._log.warning(
                "could not clean job directories",
                job_ids=[job.job_id for job in jobs],
                error=f"{type(exc).__name__}: {exc}",
            )

    def abandon(self, job: Job, error: ClustrixError) -> None:
        """Stop waiting for ``job``: its future gets ``error``; its files are left alone."""
        self._settle(job, Outcome(False, exception=error))

    def _settle(self, job: Job, done: Outcome) -> None:
        with self._lock:
            future = self._futures.pop(job.key, None)
        if future is None:
            return
        try:
            if done.ok:
                future.set_result(done.value)
            elif job.cancel_requested and isinstance(done.exception, JobCancelledError):
                future.mark_cancelled()
            else:
                future.set_exception(done.exception)
        except concurrent.futures.InvalidStateError:
            # Cancelled by the user between the job's end and now: the cancellation stands.
            return
        error = None if done.ok else type(done.exception).__name__
        self._log.info(
            "job finished" if done.ok else "job failed", job_id=job.job_id, state=job.state.value, error=error
        )

    def _read_text(self, job: Job, name: str) -> str:
        try:
            return self.transport.read_file(f"{job.directory}/{name}", tail=OUTPUT_CAPTURE_BYTES).decode(
                errors="replace"
            )
        except FileNotFoundError:
            return ""

    # -- user requests ------------------------------------------------------------------

    def cancel(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            job.cancel_requested = True
        self.backend.cancel(list(dict.fromkeys(job.job_id for job in jobs)))
        for job in jobs:
            self._log.info("job cancel requested", job_id=job.job_id)

    def read_output(self, job: Job, name: str) -> str:
        """The job's stdout or stderr so far; after the end, what was captured then."""
        captured = job.stdout_text if name == runner.STDOUT_FILE else job.stderr_text
        if captured is not None:
            return captured
        return self._read_text(job, name)

    def close(self) -> None:
        self.backend.close()
        self.transport.close()

    def _fire(self, hook_name: str, **kwargs: object) -> None:
        """Call an event hook; a broken observer is logged, never allowed to lose a job."""
        try:
            getattr(self._hook, hook_name)(**kwargs)
        except Exception as exc:  # noqa: BLE001 - see docstring
            self._log.error("event hook failed", hook=hook_name, error=f"{type(exc).__name__}: {exc}")


def _ranks(job: Job) -> range:
    return range(job.spec.resources.tasks)


def _copy_of(exc: ClustrixError) -> ClustrixError:
    copied = copy.copy(exc)
    copied.__cause__ = exc.__cause__
    return copied


def _reads(job: Job, max_result_bytes: int) -> list[FileRead]:
    """What collecting ``job`` reads, in order: each rank's meta, each rank's result, its output's tails."""
    path = job.directory
    return [
        *(FileRead(f"{path}/{runner.rank_file(runner.META_FILE, rank)}") for rank in _ranks(job)),
        *(
            FileRead(f"{path}/{runner.rank_file(runner.RESULT_FILE, rank)}", max_size=max_result_bytes)
            for rank in _ranks(job)
        ),
        FileRead(f"{path}/{runner.STDOUT_FILE}", tail=OUTPUT_CAPTURE_BYTES),
        FileRead(f"{path}/{runner.STDERR_FILE}", tail=OUTPUT_CAPTURE_BYTES),
    ]


def _meta(data: bytes | ClustrixError | None) -> dict | None:
    """A rank's meta.json as the runner wrote it; None where it left none, or none readable."""
    try:
        return json.loads(data) if isinstance(data, bytes) and data else None
    except ValueError:
        return None


class _UnknownFunction:
    """Stands for the function of an attached job, which only the submitting process had."""

    def __call__(self, *_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the function of a job attached from the journal is not known here")


class _UnknownCheckpointable(_UnknownFunction):
    """Stands for a checkpointable function: its job script then lets the call checkpoint."""

    checkpoint = _UnknownFunction.__call__


_sessions: dict[ClusterConfig, ClusterSession] = {}
_sessions_lock = threading.Lock()


def get_session(config: ClusterConfig) -> ClusterSession:
    with _sessions_lock:
        session = _sessions.get(config)
        if session is None:
            session = _sessions[config] = ClusterSession(config)
        return session


@atexit.register
def _close_sessions() -> None:
    with _sessions_lock:
        for session in _sessions.values():
            session.close()
        _sessions.clear()
