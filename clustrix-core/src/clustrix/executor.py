"""``clustrix.Executor``: a ``concurrent.futures.Executor`` whose calls run as cluster jobs.

For code written against the standard interface (``submit``, ``map``, ``shutdown``, ``with``):
hand it ``Executor(profile="slurm", cores=4)`` where it took a ``ProcessPoolExecutor``. Each
``submit`` is one job, as ``@cluster(...)(fn).submit`` would make it; a ``map`` is ONE batch
(``ClusterFunction.map``): an array of workers that claim its calls, not a job per call.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from clustrix.api import ClusterFunction
from clustrix.job import ClusterFuture, cancel
from clustrix.profiles import resolve
from clustrix.resources import Resources
from clustrix.state import JobState


class Executor(concurrent.futures.Executor):
    """Runs calls as jobs on the cluster of ``profile`` (as ``@cluster(profile=...)`` chooses it),
    with ``resources``: any keyword ``@cluster`` takes (``cores``, ``memory``, ``time``, ...).

    An unknown profile or a bad value is a ``ConfigError`` here, not at the first call.
    """

    def __init__(self, profile: str | None = None, **resources: Any) -> None:
        _, job = resolve(profile, resources)
        Resources.from_settings(job)
        self._profile = profile
        self._resources = resources
        self._shutdown = False
        # The futures not done yet, for shutdown(); each leaves the set as it completes.
        self._pending: set[ClusterFuture] = set()
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> ClusterFuture:
        """Run ``fn(*args, **kwargs)`` as a job; its future."""
        return self._start(lambda function: [function.submit(*args, **kwargs)], fn)[0]

    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None, chunksize: int = 1
    ) -> Iterator[Any]:
        """``fn(*args)`` for each tuple of ``zip(*iterables)``, submitted now as one batch; the
        results in order, each raising its call's exception when it failed.

        ``timeout`` (seconds, from this call) ends the wait with ``TimeoutError``. ``chunksize``
        is the standard library's batching hint: the default, 1, lets the batch's workers claim
        one call at a time (no tuning needed: a worker that is free takes the next call);
        ``chunksize=k`` gives each scheduler task k consecutive calls instead (static chunks,
        ``ClusterFunction.map(chunksize=k)``). When the results are abandoned (the iterator
        closed, or a call raised), the calls not finished are cancelled.
        """
        # 1 is the stdlib's "no batching", and clustrix's default is that already: one call per claim.
        chunks = None if type(chunksize) is int and chunksize == 1 else chunksize
        futures = self._start(lambda function: function.map(*iterables, chunksize=chunks), fn)
        deadline = None if timeout is None else time.monotonic() + timeout
        return _results(futures, deadline)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls; with ``cancel_futures``, cancel the calls not started yet (as the last
        poll saw them: one scheduler call); with ``wait``, return once every call has ended."""
        with self._lock:
            self._shutdown = True
            pending = list(self._pending)
        if cancel_futures:
            cancel(future for future in pending if future.state is JobState.PENDING)
        if wait:
            concurrent.futures.wait(pending)

    def _start(
        self, submit: Callable[[ClusterFunction[..., Any]], list[ClusterFuture]], fn: Callable[..., Any]
    ) -> list[ClusterFuture]:
        # Under the lock, so that shutdown() cannot miss a call submitted while it runs.
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            futures = submit(ClusterFunction(fn, self._profile, self._resources))
            self._pending.update(futures)
        for future in futures:
            future.add_done_callback(self._done)
        return futures

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)  # type: ignore[arg-type]


def _results(futures: list[ClusterFuture], deadline: float | None) -> Iterator[Any]:
    try:
        for future in futures:
            yield future.result(None if deadline is None else deadline - time.monotonic())
    finally:
        cancel(futures)
