"""The ``@cluster`` decorator: call the function and it runs as a job.

Decorating needs only the resources' checks. What a call needs (profiles, plugins,
sessions, futures) is imported by the methods that submit, on the first call, so that
``import clustrix`` stays as cheap as the decorator.
"""

from __future__ import annotations

import datetime
import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from clustrix.errors import ConfigError
from clustrix.resources import RESOURCE_KEYS, Resources

if TYPE_CHECKING:
    from clustrix.job import ClusterFuture
    from clustrix.session import ClusterSession

P = ParamSpec("P")
R = TypeVar("R")
# One call's positional and keyword arguments.
Call = tuple[tuple[Any, ...], dict[str, Any]]


class ClusterFunction(Generic[P, R]):
    """A function bound to cluster settings. Calling it submits a job, waits, and returns its value."""

    def __init__(
        self, fn: Callable[P, R], profile: str | None, settings: Mapping[str, Any], after: tuple[Any, ...] = ()
    ) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.profile = profile
        self.settings = dict(settings)
        self._after = after
        # Resource strings fail here, at decoration, not at the first call.
        Resources.from_settings({k: v for k, v in self.settings.items() if v is not None})

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.submit(*args, **kwargs).result()

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> ClusterFuture:
        """Submit one call; the future's ``result()`` waits for it."""
        return self._submit([(args, kwargs)])[0]

    def map(
        self,
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        resources: Callable[..., Mapping[str, Any]] | Sequence[Mapping[str, Any]] | None = None,
    ) -> list[ClusterFuture]:
        """Submit ``fn(*args)`` for each tuple of ``zip(*iterables)`` as one batch; futures in order.

        On a batch scheduler the batch runs as an array of workers that claim calls one at a
        time until none is left, so no tuning is needed. ``chunksize=k`` instead fixes k
        consecutive calls per scheduler task (static chunks); every call still has its own future.

        ``resources`` gives calls settings of their own over the function's (as ``options()``
        takes them): a callable, called with each call's arguments, or a list of one mapping per
        call. The calls are submitted as one batch per distinct set of settings.
        """
        if chunksize is not None and (isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1):
            raise ConfigError(f"chunksize={chunksize!r}: expected a whole number of at least 1")
        calls = [(args, {}) for args in zip(*iterables, strict=False)]
        if resources is None:
            return self._submit(calls, chunksize)
        return self._map_grouped(calls, _per_call(resources, calls), chunksize)

    def options(self, **settings: Any) -> ClusterFunction[P, R]:
        """The same function with ``settings`` (the decorator's keywords but ``profile``) over its own.

        ``fn.options(cores=8, memory="32GB", gpus=1, queue="gpu").submit(x)``. Resource strings
        are checked here: ConfigError for a malformed one.
        """
        if "profile" in settings:
            raise ConfigError("options(profile=...): a function's profile is the decorator's; decorate it again")
        return ClusterFunction(self.fn, self.profile, {**self.settings, **settings}, self._after)

    def after(self, *futures: ClusterFuture) -> ClusterFunction[P, R]:
        """The same function whose calls start only once ``futures`` completed successfully.

        A future passed as an argument is a dependency too, and its value is what the call
        receives. If a dependency fails, the calls waiting for it raise DependencyFailedError.
        """
        from clustrix.job import ClusterFuture

        for future in futures:
            if not isinstance(future, ClusterFuture):
                raise ConfigError(f"after(): {future!r} is not a future of a cluster job")
        return ClusterFunction(self.fn, self.profile, self.settings, self._after + futures)

    def session(self) -> ClusterSession:
        """The cluster session this function's calls go to under the current configuration."""
        from clustrix.profiles import resolve
        from clustrix.session import get_session

        config, _ = resolve(self.profile, self.settings)
        return get_session(config)

    def _map_grouped(
        self,
        calls: list[Call],
        settings: list[Mapping[str, Any]],
        chunksize: int | None,
    ) -> list[ClusterFuture]:
        """Submit each group of calls with equal settings as one batch; the futures in the calls' order."""
        from clustrix.job import cancel

        groups: dict[Any, tuple[ClusterFunction[P, R], list[int]]] = {}
        for index, own in enumerate(settings):
            function = self.options(**own)
            # Equal resources written differently ("8GB", "8192MB") are one group.
            resources = Resources.from_settings({k: v for k, v in function.settings.items() if v is not None})
            rest = sorted((k, repr(v)) for k, v in own.items() if k not in RESOURCE_KEYS)
            groups.setdefault((resources, tuple(rest)), (function, []))[1].append(index)
        futures: list[ClusterFuture | None] = [None] * len(calls)
        submitted: list[ClusterFuture] = []
        try:
            for function, indices in groups.values():
                group = function._submit([calls[i] for i in indices], chunksize)
                submitted += group
                for index, future in zip(indices, group, strict=True):
                    futures[index] = future
        except BaseException:
            # All of the map or none of it: the groups already submitted are cancelled.
            cancel(submitted)
            raise
        ordered = [future for future in futures if future is not None]
        for future in ordered:
            future.batch = ordered
        return ordered

    def _submit(self, calls: list[Call], chunksize: int | None = None) -> list[ClusterFuture]:
        if not calls:
            return []
        from clustrix.profiles import resolve
        from clustrix.session import get_session
        from clustrix.spec import JobSpec

        config, job = resolve(self.profile, self.settings)
        resources = Resources.from_settings(job)
        if chunksize is not None and resources.tasks > 1:
            raise ConfigError(
                f"chunksize={chunksize}: a call on {resources.tasks} tasks (nodes x tasks_per_node) "
                "is a job of its own; leave chunksize out"
            )
        specs = [
            JobSpec(
                fn=self.fn,
                args=args,
                kwargs=kwargs,
                resources=resources,
                name=job.get("name") or getattr(self.fn, "__name__", "job"),
                env=job.get("env", {}),
                setup=job.get("setup", ()),
                python=job.get("python"),
                parallel=bool(job.get("parallel", False)),
                after=self._after,
                **{
                    key: job[key]
                    for key in ("gather", "max_requeues", "checkpoint_notice", "retries", "retry_on")
                    if key in job
                },
            )
            for args, kwargs in calls
        ]
        if job.get("cache") and not self._after:
            from clustrix import cache

            return cache.submit(get_session(config), specs, job, chunksize)
        return get_session(config).submit(specs, chunksize)


def _per_call(
    resources: Callable[..., Mapping[str, Any]] | Sequence[Mapping[str, Any]],
    calls: list[Call],
) -> list[Mapping[str, Any]]:
    """Each call's own settings, from a ``map``'s ``resources=``."""
    if callable(resources):
        settings = [resources(*args) for args, _ in calls]
    elif isinstance(resources, Sequence) and not isinstance(resources, str):
        if len(resources) != len(calls):
            raise ConfigError(f"resources: {len(resources)} settings for {len(calls)} calls; give one per call")
        settings = list(resources)
    else:
        raise ConfigError(f"resources={resources!r}: expected a callable or a list of one mapping per call")
    for index, own in enumerate(settings):
        if not isinstance(own, Mapping):
            raise ConfigError(f"resources: call {index} has {own!r}; expected a mapping such as {{'cores': 4}}")
    return settings


@overload
def cluster(fn: Callable[P, R], /) -> ClusterFunction[P, R]: ...


@overload
def cluster(
    *,
    profile: str | None = None,
    backend: str | None = None,
    cores: int | None = None,
    memory: int | str | None = None,
    time: int | str | datetime.timedelta | None = None,
    gpus: int | None = None,
    nodes: int | None = None,
    tasks_per_node: int | None = None,
    queue: str | None = None,
    partition: str | None = None,
    account: str | None = None,
    env: Mapping[str, str] | None = None,
    setup: Iterable[str] | None = None,
    python: str | None = None,
    name: str | None = None,
    parallel: bool | None = None,
    gather: Literal["rank0", "all"] | None = None,
    max_requeues: int | None = None,
    checkpoint_notice: int | None = None,
    retries: int | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    cache: bool | str | os.PathLike[str] | None = None,
    **options: Any,
) -> Callable[[Callable[P, R]], ClusterFunction[P, R]]: ...


def cluster(fn: Callable[..., Any] | None = None, /, *, profile: str | None = None, **settings: Any) -> Any:
    """Run the decorated function as a cluster job.

    Keyword arguments override the profile (``profile=``, else ``$CLUSTRIX_PROFILE``, else
    the config file's default, else the embedded ``local`` backend): ``cores``, ``memory``
    ("512MB", "2GiB"), ``time`` ("HH:MM:SS", minutes, timedelta), ``gpus``, ``nodes``,
    ``tasks_per_node``, ``queue``/``partition``, ``account``, ``env``, ``setup`` (shell lines
    run before Python), ``python``, ``name``, ``parallel`` (``pmap`` uses the job's cores),
    ``gather`` (``"all"``: a call on several tasks returns every rank's value in a list, not
    rank 0's), ``max_requeues`` and ``checkpoint_notice`` (seconds) for a callable object with
    a ``checkpoint`` method (see the README), ``retries`` (how often a call that failed for a
    reason outside it, such as a node failure or its worker killed, runs again) and ``retry_on``
    (exception types that are retried too: the call's own, ``JobTimeoutError``, ...), ``cache``
    (True, or a directory: a call whose result is stored there returns it without a job; see
    ``clustrix.cache``), ``backend``, and any key the chosen backend or transport adds. Bad
    values raise ``ConfigError`` at the first call.

    With ``nodes`` > 1 or ``tasks_per_node`` > 1 the function runs once on every task (on
    backends that can launch tasks: Slurm); ``clustrix.task_environment()`` inside it gives
    its rank, the world size and where rank 0 listens.
    """
    if fn is not None:
        return ClusterFunction(fn, profile, settings)
    return lambda f: ClusterFunction(f, profile, settings)
