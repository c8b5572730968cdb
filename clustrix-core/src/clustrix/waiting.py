"""Waiting on many futures: ``as_completed``, ``wait``, and ``progress`` (the same, with a live bar).

A ClusterFuture is a ``concurrent.futures.Future``, so the standard library's ``as_completed`` and
``wait`` work on it as they are, a cancelled job counting as done. The ones here are those, plus
what ``future.result()`` does: Ctrl-C while waiting cancels the unfinished jobs waited on, each
with its whole batch (one ``map``), where the profile's ``cancel_on_interrupt`` says so (the
default). ``progress`` draws a tqdm bar (``tqdm.auto``: a widget in a notebook); tqdm is an
optional dependency (``pip install 'clustrix-core[progress]'``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, Future
from typing import Any, TextIO

from clustrix.errors import ConfigError
from clustrix.job import ClusterFuture, cancel
from clustrix.state import JobState

__all__ = ["ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "as_completed", "progress", "wait"]

# The bar is redrawn this often: jobs go from pending to running without any future completing.
REFRESH_SECONDS = 0.5

_SETTING = "CLUSTRIX_PROGRESS"
_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off"})


def as_completed(futures: Iterable[Future[Any]], timeout: float | None = None) -> Iterator[Future[Any]]:
    """Each future once it is done (finished, failed or cancelled), first done first.

    ``concurrent.futures.as_completed``: TimeoutError if some are still unfinished ``timeout``
    seconds after the first ``next()``. Ctrl-C while waiting cancels the unfinished jobs.
    """
    futures = list(futures)
    with _cancel_on_interrupt(futures):
        yield from concurrent.futures.as_completed(futures, timeout)


def wait(
    futures: Iterable[Future[Any]], timeout: float | None = None, return_when: str = ALL_COMPLETED
) -> tuple[set[Future[Any]], set[Future[Any]]]:
    """``(done, not_done)`` once ``return_when`` holds or ``timeout`` seconds passed.

    ``concurrent.futures.wait``: ``return_when`` is ``ALL_COMPLETED`` (the default),
    ``FIRST_COMPLETED`` or ``FIRST_EXCEPTION`` (all three exported by ``clustrix`` too); a
    cancelled future counts as done. Ctrl-C while waiting cancels the unfinished jobs.
    """
    futures = list(futures)
    with _cancel_on_interrupt(futures):
        return concurrent.futures.wait(futures, timeout, return_when)


def progress(
    futures: Iterable[Future[Any]], *, enabled: bool | None = None, file: TextIO | None = None
) -> Iterator[Future[Any]]:
    """As ``as_completed``, with a live bar of how many jobs are done, failed, running and pending.

    ``for future in clustrix.progress(futures): ...``, or ``list(clustrix.progress(futures))``
    to just wait. The bar goes to ``file`` (default stderr). ``enabled=None`` (the default)
    shows it when ``$CLUSTRIX_PROGRESS`` says so (``1``/``0``), else only when someone is
    watching: ``file`` is a terminal, or this is a notebook; without tqdm installed, no bar.
    ``enabled=True`` without tqdm raises ConfigError.
    """
    futures = list(dict.fromkeys(futures))
    stream = sys.stderr if file is None else file
    # Decided here, not on the first next(): a missing tqdm is an error of the call.
    bar_class = _bar_class(enabled, stream)
    if bar_class is None:
        return as_completed(futures)
    return _follow(futures, bar_class, stream)


def _follow(futures: list[Future[Any]], bar_class: type, stream: TextIO) -> Iterator[Future[Any]]:
    finished: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
    left = len(futures)
    with _cancel_on_interrupt(futures), bar_class(total=len(futures), file=stream, unit="job") as bar:
        # One callback per future, not a wait() per completion: a map of thousands stays linear.
        for future in futures:
            future.add_done_callback(finished.put)
        while left:
            _draw(bar, futures)
            deadline = time.monotonic() + REFRESH_SECONDS
            while left and (timeout := deadline - time.monotonic()) > 0:
                try:
                    future = finished.get(timeout=timeout)
                except queue.Empty:
                    break
                left -= 1
                yield future
        _draw(bar, futures)


def _draw(bar: Any, futures: Sequence[Future[Any]]) -> None:
    counts = dict.fromkeys(("done", "failed", "running", "pending", "cancelled"), 0)
    for future in futures:
        counts[_kind(future)] += 1
    bar.n = counts["done"] + counts["failed"] + counts["cancelled"]
    text = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n or kind != "cancelled")
    bar.set_postfix_str(text, refresh=False)
    bar.refresh()


def _kind(future: Future[Any]) -> str:
    if future.done():
        if future.cancelled():
            return "cancelled"
        return "done" if future.exception() is None else "failed"
    if isinstance(future, ClusterFuture):
        # A job that ended but whose result is still being read counts as running.
        return "pending" if future.state is JobState.PENDING else "running"
    return "running" if future.running() else "pending"


def _bar_class(enabled: bool | None, stream: TextIO) -> type | None:
    """tqdm.auto's bar when one is to be shown, else None."""
    wanted = _setting() if enabled is None else enabled
    if wanted is False or (wanted is None and not (_is_terminal(stream) or _in_notebook())):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        if wanted:
            raise ConfigError(
                "a progress bar needs tqdm, which is not installed: pip install 'clustrix-core[progress]'"
            ) from exc
        return None
    return tqdm


def _setting() -> bool | None:
    value = os.environ.get(_SETTING, "").strip().lower()
    if not value:
        return None
    if value in _ON or value in _OFF:
        return value in _ON
    raise ConfigError(f"{_SETTING}={value!r}: expected 1 or 0 (true/false, yes/no, on/off)")


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _in_notebook() -> bool:
    # Only an IPython already imported is asked: a notebook's kernel has one, with a ``kernel``;
    # a terminal IPython has none.
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


@contextlib.contextmanager
def _cancel_on_interrupt(futures: Sequence[Future[Any]]) -> Iterator[None]:
    """Ctrl-C inside: cancel the batches of the unfinished jobs (as ``ClusterFuture.result``), then re-raise."""
    try:
        yield
    except KeyboardInterrupt:
        batches = {
            id(member): member
            for future in futures
            if isinstance(future, ClusterFuture) and not future.done() and future.job.session.config.cancel_on_interrupt
            for member in future.batch
        }
        cancel(batches.values())
        raise
