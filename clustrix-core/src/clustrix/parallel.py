"""Inside a job: fan a loop's iterations out over the cores the job was given.

``pmap(fn, items)`` runs ``fn`` on each item in worker processes when the job was
submitted with ``parallel=True`` (one worker per allocated core), and serially
otherwise, so the same code runs anywhere. ``fn`` may be a lambda or a closure: it
travels to the workers with cloudpickle.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import cloudpickle

T = TypeVar("T")
R = TypeVar("R")

# Where schedulers say how many cores a job has, in the order they are trusted.
_CORE_VARIABLES = ("CLUSTRIX_CORES", "SLURM_CPUS_PER_TASK", "NSLOTS", "PBS_NUM_PPN", "NCPUS")


def job_cores() -> int:
    """How many workers ``pmap`` uses: the job's cores when it runs with ``parallel=True``, else 1."""
    if os.environ.get("CLUSTRIX_PARALLEL") != "1":
        return 1
    for name in _CORE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def _call(fn_bytes: bytes, item: Any) -> Any:
    return cloudpickle.loads(fn_bytes)(item)


def pmap(fn: Callable[[T], R], items: Iterable[T], *, workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]``, in order, over ``workers`` processes (default: ``job_cores()``)."""
    items = list(items)
    workers = min(workers or job_cores(), len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    fn_bytes = cloudpickle.dumps(fn)
    # fork keeps the job's imports; spawn is the fallback where fork does not exist.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method)) as pool:
        return list(pool.map(_call, itertools.repeat(fn_bytes), items))
