"""When a failed call is run again (``retries=N``), and how long the client waits before it does.

A call is retried when it failed for a reason outside the function: its node failed or its
process vanished (NodeFailureError), the scheduler preempted it and did not requeue it
(JobPreemptedError), the scheduler lost it (ended UNKNOWN with no result), or the worker
running it was killed or cancelled under it (a call of a ``map``'s workers). Never for
what the call itself did (its exception, ``sys.exit``, its time or memory limit, an
environment that cannot load it) unless ``retry_on`` names that exception's type; never
for a cancel this client asked for or a failed upstream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from clustrix import workers
from clustrix.errors import (
    ConfigError,
    DependencyFailedError,
    JobCancelledError,
    JobFailedError,
    JobPreemptedError,
    NodeFailureError,
)
from clustrix.state import JobState

if TYPE_CHECKING:
    from clustrix.job import Job

# The wait before the first retry, doubled for each one after it, up to MAX_DELAY: a node that
# failed or a scheduler that lost jobs is often still recovering a moment later.
FIRST_DELAY = 1.0
MAX_DELAY = 60.0


def exception_types(value: Any) -> tuple[type[BaseException], ...]:
    """``retry_on``'s value: an exception class or several (a tuple or list of them)."""
    types = tuple(value) if isinstance(value, list | tuple) else (value,)
    if not types or not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        raise ConfigError(
            f"retry_on={value!r}: expected an exception class or a tuple of them, e.g. (ConnectionError,)"
        )
    return types


def outside_the_call(job: Job, error: BaseException) -> bool:
    """Whether ``error`` ended ``job`` for a reason outside its function (see the module docstring)."""
    if isinstance(error, NodeFailureError | JobPreemptedError):
        return True
    in_a_worker = workers.is_call_id(job.job_id)
    if type(error) is JobCancelledError:
        # Not ours, and not its upstream's: the worker it ran in was cancelled under it.
        return in_a_worker and not job.cancel_requested
    if type(error) is JobFailedError:
        # No result and no kill of its own: the scheduler lost it, or its worker died under it.
        return job.state is JobState.UNKNOWN or in_a_worker
    return False


def should_retry(job: Job, error: BaseException) -> bool:
    """Whether ``job``, which ended with ``error``, is run again."""
    if job.retries >= job.spec.retries or job.cancel_requested or isinstance(error, DependencyFailedError):
        return False
    return outside_the_call(job, error) or isinstance(error, job.spec.retry_on)


def delay(retry: int) -> float:
    """Seconds before retry number ``retry`` (1 for the first)."""
    return min(FIRST_DELAY * 2 ** (retry - 1), MAX_DELAY)


def names(types: Iterable[type[BaseException]]) -> list[str]:
    """``retry_on``'s types by qualified name, for the journal (types themselves are not JSON)."""
    return [f"{t.__module__}.{t.__qualname__}" for t in types]
