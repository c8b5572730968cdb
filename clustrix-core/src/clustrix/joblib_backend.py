"""The joblib parallel backend ``"clustrix"``: ``joblib.Parallel``, and scikit-learn's ``n_jobs``, on a cluster.

    with joblib.parallel_config(backend="clustrix", profile="slurm", cores=2):
        GridSearchCV(SVC(), grid, n_jobs=-1).fit(X, y)

The keywords after ``backend`` are ``clustrix.Executor``'s: a profile and anything ``@cluster``
takes. Each of joblib's batches (one or more tasks) is one clustrix call, its values coming back
in order and its exception with its own type. The batches joblib dispatches before it starts
waiting are submitted together as ONE ``map``: an array of workers that keep what they imported
(scikit-learn) from one call to the next. A batch joblib dispatches later, as an earlier one ends,
goes by itself. How many joblib dispatches before waiting is its ``pre_dispatch``, by default
2 x ``n_jobs`` tasks; ``n_jobs=-1``, this backend's default, stands for ``ALL`` workers, so a
``Parallel`` of up to 2 x ``ALL`` tasks is a single map (``pre_dispatch="all"``: any size). A
positive ``n_jobs`` keeps joblib's meaning, and ``n_jobs=1`` runs the tasks in this process, as
joblib does with every backend.

joblib is an optional dependency (``pip install 'clustrix-core[joblib]'``), on the cluster too:
the workers unpickle joblib's batches. ``import clustrix`` makes the name known to joblib
(clustrix.joblib_hook); this module is imported only when a ``Parallel`` uses it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

try:
    from joblib.parallel import ParallelBackendBase
except ImportError as exc:
    raise ImportError(
        "clustrix's joblib backend needs joblib, here and in the cluster's Python: pip install 'clustrix-core[joblib]'"
    ) from exc

from clustrix.api import ClusterFunction
from clustrix.errors import ConfigError
from clustrix.job import ClusterFuture, cancel
from clustrix.profiles import resolve
from clustrix.resources import Resources

# What n_jobs=-1 stands for: more workers than a cluster gives one user at once (Slurm's default
# MaxArraySize is 1001), so joblib hands over a whole grid search before it waits; yet a number
# scikit-learn can split work by (it cuts some arrays into n_jobs slices).
ALL = 1000


def joblib_batch(batch: Callable[[], list[Any]]) -> list[Any]:
    """One of joblib's batches, run in a job: its tasks' values, in order."""
    return batch()


class ClustrixBackend(ParallelBackendBase):
    """joblib's ``ParallelBackendBase`` over ``ClusterFunction.map``; see the module's docstring."""

    default_n_jobs = -1
    supports_retrieve_callback = True
    # The tasks run in other processes, on other machines: require="sharedmem" makes joblib use threads.
    uses_threads = False
    supports_sharedmem = False

    def __init__(
        self,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        profile: str | None = None,
        **resources: Any,
    ) -> None:
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads)
        # Checked at parallel_config(), not at the first batch.
        _, job = resolve(profile, resources)
        Resources.from_settings(job)
        self._function = ClusterFunction(joblib_batch, profile, resources)
        self._lock = threading.Lock()
        # The batches of the dispatch before joblib waits, with their callbacks (None: sent as they come).
        self._held: list[tuple[Callable[[], list[Any]], Callable[..., Any] | None]] | None = None
        # This Parallel call's futures, for abort_everything.
        self._futures: list[concurrent.futures.Future[Any]] = []

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        if n_jobs == 0:
            raise ConfigError("n_jobs=0: expected -1 (as many as the cluster runs) or a number of workers")
        return ALL if n_jobs is None or n_jobs < 0 else n_jobs

    def start_call(self) -> None:
        with self._lock:
            self._held = []
            self._futures = []

    def submit(self, func: Callable[[], list[Any]], callback: Callable[..., Any] | None = None) -> None:
        """Hold the batch while joblib is still dispatching before it waits; else send it now.

        Returns nothing: with ``supports_retrieve_callback`` joblib keeps what this returns unused,
        and a held batch has no future yet. Its callback gets the future once there is one.
        """
        with self._lock:
            if self._held is not None:
                self._held.append((func, callback))
                return
        self._send([(func, callback)])

    @contextlib.contextmanager
    def retrieval_context(self) -> Iterator[None]:
        # joblib enters this once its first dispatch is done, before it waits for any result.
        with self._lock:
            held, self._held = self._held or [], None
        self._send(held)
        yield

    def retrieve_result_callback(self, future: concurrent.futures.Future[Any]) -> list[Any]:
        return future.result()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """A task failed or joblib stopped waiting: cancel the rest, in one scheduler call per cluster."""
        with self._lock:
            futures, self._futures, self._held = self._futures, [], None
        cancel(future for future in futures if isinstance(future, ClusterFuture))

    def _send(self, batches: list[tuple[Callable[[], list[Any]], Callable[..., Any] | None]]) -> None:
        """Submit ``batches`` as one map. Never raises: a submission that failed reaches joblib
        through each batch's callback, whichever thread sent it (joblib dispatches from callbacks)."""
        if not batches:
            return
        futures: list[concurrent.futures.Future[Any]]
        try:
            futures = list(self._function.map([func for func, _ in batches]))
        except Exception as exc:  # noqa: BLE001 - handed to joblib, which raises it in its caller
            futures = [concurrent.futures.Future() for _ in batches]
            for future in futures:
                future.set_exception(exc)
        with self._lock:
            self._futures += futures
        for future, (_, callback) in zip(futures, batches, strict=True):
            if callback is not None:
                future.add_done_callback(callback)
