"""A backend with no scheduler: each job is a detached process group on the transport's host.

This is the ``local`` backend (over the local transport) and the base of the ``ssh``
backend (over SSH). The client keeps the queue: never more cores in use than the host
has. The host keeps the truth: each job's ``job.sh`` records its pid (= its process
group), its exit code, and markers for a time-limit kill or a memory error, so one
shell command per poll reads the state of every job, and jobs survive a lost client.

A ``map`` runs as workers (``clustrix.workers``): as many worker process groups as the
host's cores hold, each claiming calls and running each in a child of one interpreter,
instead of an interpreter per call. A worker is a job like any other here, keyed
``<batch>:w<launch>-<n>`` in ``<batch>/w<launch>-<n>``, with the same records.
"""

from __future__ import annotations

import collections
import shlex
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from clustrix import runner, workers
from clustrix.backend import Backend, StagedJob
from clustrix.errors import BackendUnavailableError, SubmissionError
from clustrix.records import Allocation
from clustrix.state import JobState, JobStatus

# Seconds between the polite TERM and the KILL, for a time limit and for cancel.
KILL_GRACE = 10
# A worker's key is ``<batch><WORKER_SEPARATOR><worker>``: a job's key (a uuid) never holds it.
WORKER_SEPARATOR = ":"
# What job.sh and cancel record in a job's directory about one run of it.
_RUN_RECORDS = ("pid", "exitcode", "timedout", "oom", "cancelled")

# One fork per job, without job control, so setsid makes each job.sh its own group leader. A job
# submitted again (a checkpoint to resume, maybe by another client) starts without its last run's
# records, which would answer for this one.
_LAUNCH = f"""for d in "$@"; do
  rm -f -- {" ".join(f'"$d/{name}"' for name in _RUN_RECORDS)}
  setsid sh "$d/job.sh" </dev/null >>"$d/stdout" 2>>"$d/stderr" & echo $! > "$d/pid"
done"""

# Liveness is read before the exit code: a job that is dead and has no exit code died unrecorded.
# A zombie counts as dead, for hosts whose init does not reap orphans.
_STATUS = """
for d in "$@"; do
  [ -d "$d" ] || { echo missing; continue; }
  alive=0
  if [ -s "$d/pid" ]; then
    st=$(ps -o stat= -p "$(cat "$d/pid")" 2>/dev/null)
    case "$st" in ""|Z*) ;; *) alive=1;; esac
  fi
  if [ -f "$d/exitcode" ]; then
    if [ -f "$d/timedout" ]; then echo "timeout $(cat "$d/exitcode")"
    elif [ -f "$d/oom" ]; then echo "oom $(cat "$d/exitcode")"
    else echo "exit $(cat "$d/exitcode")"; fi
  elif [ -f "$d/cancelled" ]; then echo cancelled
  elif [ $alive = 1 ]; then echo running
  else echo lost; fi
done
"""

# job.sh leads the job's process group; the runner passes the TERM on to the call's own group.
_CANCEL = f"""
for d in "$@"; do
  [ -f "$d/exitcode" ] && continue
  : > "$d/cancelled"
  pg=$(cat "$d/pid" 2>/dev/null) || continue
  kill -s TERM -- "-$pg" 2>/dev/null
  ( sleep {KILL_GRACE}; kill -s KILL -- "-$pg" 2>/dev/null ) >/dev/null 2>&1 </dev/null &
done
"""


class ProcessBackend(Backend):
    """Jobs as process groups on one host; the job id is the job's key."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lock = threading.Lock()
        self._cores: int | None = None
        self._queue: collections.deque[StagedJob] = collections.deque()
        # Cores held by the jobs this client started and has not yet seen end.
        self._running: dict[str, int] = {}
        self._ended: dict[str, JobStatus] = {}
        self.pool = workers.WorkerPool(self)

    @property
    def cores(self) -> int:
        """The host's core count, asked once."""
        if self._cores is None:
            result = self.transport.run(["nproc"]).check(BackendUnavailableError, "counting the host's cores")
            self._cores = int(result.stdout.strip())
        return self._cores

    def check(self) -> str:
        return f"{self.cores} cores"

    def knows(self, key: str) -> bool:
        """Queued here, or started on the host (its pid file exists), or a call of a batch of workers."""
        if workers.is_call_id(key):
            return self.pool.knows(key)
        with self._lock:
            if any(job.key == key for job in self._queue):
                return True
        try:
            self.transport.read_file(f"{self.job_directory(key)}/pid")
        except FileNotFoundError:
            return False
        return True

    # This backend is its own scheduler: the job's directory and the runner's record are its
    # queue and its accounting.

    def job_in_queue(self, job_id: str) -> bool | None:
        return self.knows(job_id)

    def job_allocation(self, job_id: str, meta: Mapping[str, Any] | None) -> Allocation | None:
        if meta is None:
            return None
        env, limits = meta.get("env", {}), meta.get("limits", {})
        time_limit = env.get("CLUSTRIX_TIME_LIMIT")
        return Allocation(
            cores=int(env["CLUSTRIX_CORES"]) if "CLUSTRIX_CORES" in env else None,
            memory=limits.get("address_space"),
            time_limit=int(time_limit) if time_limit else None,
            nodes=(meta["host"],),
        )

    def rerun(self, job_id: str, job: StagedJob) -> str:
        """A call of a map's workers goes back to its batch's queue while the batch is followed."""
        if workers.is_call_id(job_id) and self.pool.requeue(job_id):
            return job_id
        return super().rerun(job_id, job)

    def submit(self, jobs: Sequence[StagedJob], chunksize: int | None = None) -> list[str]:
        """A batch runs as workers; a single call, or any ``chunksize``, as one process group per call."""
        for job in jobs:
            if job.spec.resources.cores > self.cores:
                raise SubmissionError(f"job asks for {job.spec.resources.cores} cores but the host has {self.cores}")
        if chunksize is None and len(jobs) > 1:
            return self.pool.submit(jobs, min(len(jobs), max(1, self.cores // jobs[0].spec.resources.cores)))
        with self._lock:
            for job in jobs:
                self._ended.pop(job.key, None)  # submitted again (a checkpoint to resume)
        self.transport.write_files({f"{job.directory}/job.sh": self._script(job).encode() for job in jobs}, 0o700)
        self.write_runner([job.directory for job in jobs])
        with self._lock:
            self._queue.extend(jobs)
            self._launch_ready()
        return [job.key for job in jobs]

    def launch_workers(
        self, jobs: Sequence[StagedJob], batch_dir: str, size: int, number: int
    ) -> tuple[str, list[str]]:
        """Queue ``size`` worker jobs (started as cores free up, after ``jobs``' dependencies)."""
        spec = jobs[0].spec
        after = tuple(dict.fromkeys(upstream for job in jobs for upstream in job.after))
        name = batch_dir.rpartition("/")[2]
        workers_named = [f"w{number}-{n}" for n in range(size)]
        started = [
            StagedJob(key=f"{name}{WORKER_SEPARATOR}{w}", directory=f"{batch_dir}/{w}", spec=spec, after=after)
            for w in workers_named
        ]
        self.transport.make_dirs([worker.directory for worker in started], 0o700)
        scripts = {f"{w.directory}/job.sh": self._script(w, batch_dir).encode() for w in started}
        self.transport.write_files(scripts, 0o700)
        with self._lock:
            self._queue.extend(started)
            self._launch_ready()
        return name, [worker.key for worker in started]

    def job_directory(self, key: str) -> str:
        """A worker's key is ``<batch>:<worker>`` (no slash: the worker's claims carry it in file names)."""
        if not _is_worker(key):
            return super().job_directory(key)
        batch, _, worker = key.partition(WORKER_SEPARATOR)
        return f"{self.workdir}/{batch}/{worker}"

    def retire_workers(self, tasks: Sequence[str]) -> None:
        """Nothing to do: workers not started yet were dropped from the queue once every call was claimed."""

    def follow_workers(self, batch_dir: str, tasks: Sequence[str]) -> None:
        """Nothing to do: a worker's key names its directory (``job_directory``)."""

    def worker_output(self, batch_dir: str) -> str:
        return f"{batch_dir}/w0-0/stderr"

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Jobs still queued here are PENDING; every other job is read from its directory; calls from workers."""
        calls, plain = workers.split_calls(job_ids)
        tasks = self.pool.tasks_to_ask(calls)
        with self._lock:
            # Workers outlive their batch's last call by a moment: until seen ended they hold cores.
            lingering = [key for key in self._running if _is_worker(key) and key not in tasks]
        statuses = self._poll_jobs(plain + tasks + lingering)
        by_call = self.pool.statuses(calls, statuses)
        with self._lock:
            # Jobs waiting for calls (``after``) start once those ended COMPLETED.
            self._ended.update((call, status) for call, status in by_call.items() if status.state.finished)
            self._launch_ready()
        return {**{job_id: statuses[job_id] for job_id in plain}, **by_call}

    def _poll_jobs(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        with self._lock:
            queued = {job.key for job in self._queue}
            statuses = {key: self._ended[key] for key in job_ids if key in self._ended}
            for key in job_ids:
                if key in queued:
                    statuses[key] = JobStatus(JobState.PENDING, reason="waiting for free cores or dependencies")
            to_read = [key for key in job_ids if key not in statuses]
            if to_read:
                statuses.update(self._read_states(to_read))
            self._launch_ready()
            return statuses

    def cancel(self, job_ids: Sequence[str]) -> None:
        calls, plain = workers.split_calls(job_ids)
        job_ids = [*self.pool.cancel(calls), *plain]
        with self._lock:
            for job in [j for j in self._queue if j.key in job_ids]:
                self._queue.remove(job)
                self._ended[job.key] = JobStatus(JobState.CANCELLED, reason="cancelled before it started")
            started = [self.job_directory(key) for key in job_ids if key not in self._ended]
        if started:
            self.transport.run(["sh", "-c", _CANCEL, "sh", *started]).check(BackendUnavailableError, "cancelling")

    def _launch_ready(self) -> None:
        """Start queued jobs in order while their cores fit, skipping those that wait for others.

        A job whose dependency ended without completing is cancelled here, as ``afterok`` does.
        Called with the lock held.
        """
        free = self.cores - sum(self._running.values())
        starting = []
        for job in list(self._queue):
            ended = [self._ended.get(upstream) for upstream in job.after]
            failed = next((s for s in ended if s is not None and s.state is not JobState.COMPLETED), None)
            if failed is not None:
                self._queue.remove(job)
                self._ended[job.key] = JobStatus(JobState.CANCELLED, reason=f"a dependency ended {failed.state.value}")
                continue
            if any(s is None for s in ended):
                continue
            if job.spec.resources.cores > free:
                break  # first come, first served: a big job is not overtaken by smaller ones
            self._queue.remove(job)
            free -= job.spec.resources.cores
            starting.append(job)
        if not starting:
            return
        result = self.transport.run(["sh", "-c", _LAUNCH, "sh", *(job.directory for job in starting)])
        if not result.ok:
            for job in starting:
                self._ended[job.key] = JobStatus(JobState.FAILED, reason=f"could not start: {result.stderr.strip()}")
            return
        for job in starting:
            self._running[job.key] = job.spec.resources.cores

    def _read_states(self, keys: list[str]) -> dict[str, JobStatus]:
        """One command for every job; ended ones free their cores. Called with the lock held."""
        result = self.transport.run(["sh", "-c", _STATUS, "sh", *(self.job_directory(key) for key in keys)])
        result.check(BackendUnavailableError, "reading job states")
        lines = result.stdout.splitlines()
        if len(lines) != len(keys):
            raise BackendUnavailableError(f"job state query answered {len(lines)} lines for {len(keys)} jobs")
        statuses = {}
        for key, line in zip(keys, lines, strict=True):
            word, _, code = line.partition(" ")
            if word == "running":
                statuses[key] = JobStatus(JobState.RUNNING)
                continue
            state, reason = _STATUS_WORDS[word]
            exit_code = int(code) if code.strip().lstrip("-").isdigit() else None
            if state is JobState.COMPLETED and exit_code != 0:
                state, reason = JobState.FAILED, f"the runner exited {exit_code}"
            statuses[key] = self._ended[key] = JobStatus(state, reason=reason, exit_code=exit_code)
            self._running.pop(key, None)
        return statuses

    def _script(self, job: StagedJob, batch_dir: str | None = None) -> str:
        """``job.sh``: environment, setup, limits, the runner, and the record of how it ended.

        For a worker of ``batch_dir`` the runner claims calls and enforces each call's time
        limit itself; the memory limit holds for each call's process as for the worker's.
        """
        resources = job.spec.resources
        d = shlex.quote(job.directory)
        limit = resources.time if batch_dir is None else None
        lines = [
            "#!/bin/sh",
            f"# clustrix job {job.key}",
            f"export CLUSTRIX_JOB_ID={shlex.quote(job.key)}",
            f"export CLUSTRIX_CORES={resources.cores}",
            *([f"export CLUSTRIX_TIME_LIMIT={limit}"] if limit else []),
            *([f"export CLUSTRIX_CALL_TIME={resources.time}"] if resources.time and not limit else []),
            *self.setup_lines(job.spec),
        ]
        if resources.memory:
            lines.append(f"ulimit -v {resources.memory // 1024}")
        if batch_dir is None:
            # The runner holds the call to CLUSTRIX_TIME_LIMIT itself (see runner.run_limited).
            lines += [self.runner_line([job]), "rc=$?"]
            if limit:
                lines.append(f"if [ $rc -eq {runner.TIMEOUT_EXIT} ]; then : > {d}/timedout; fi")
        else:
            worker = [self.python_for(job.spec), f"{batch_dir}/runner.py", "--worker", batch_dir, job.key]
            lines += [shlex.join(worker), "rc=$?"]
        if resources.memory and batch_dir is None:
            lines.append(f"if [ $rc -ne 0 ] && grep -qs MemoryError {d}/stderr; then : > {d}/oom; fi")
        lines.append(f"echo $rc > {d}/exitcode.tmp && mv {d}/exitcode.tmp {d}/exitcode")
        return "\n".join(lines) + "\n"


_STATUS_WORDS: dict[str, tuple[JobState, str]] = {
    "exit": (JobState.COMPLETED, ""),
    "timeout": (JobState.TIMEOUT, "the runner killed the call at its time limit"),
    "oom": (JobState.OUT_OF_MEMORY, "MemoryError under the job's memory limit (RLIMIT_AS)"),
    "cancelled": (JobState.CANCELLED, "cancelled"),
    "lost": (JobState.NODE_FAIL, "the job's process vanished without an exit status"),
    "missing": (JobState.UNKNOWN, "no such job directory"),
}


def _is_worker(key: str) -> bool:
    return WORKER_SEPARATOR in key
