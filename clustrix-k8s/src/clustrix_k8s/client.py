"""The API server as the ``kubernetes`` backend talks to it.

Connected on first use from the profile's kubeconfig (or, in a pod, its service account);
one request at a time through ``request``, whose failures carry the API server's own
words; every request counted by what it was for (the benchmarks and tests read
``requests``); a pool of ``api_concurrency`` threads for requests made side by side.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import threading
from collections.abc import Callable
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from clustrix.config import ClusterConfig
from clustrix.errors import BackendUnavailableError, ClustrixError
from clustrix.log import get_logger, register_secret
from clustrix_k8s import manifest

REQUEST_TIMEOUT = (10, 60)
IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class Api:
    """One connection to the API server, for one backend."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.requests: collections.Counter[str] = collections.Counter()
        self._counting = threading.Lock()
        self._connected = threading.Lock()
        self._settings: manifest.Settings | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.host = ""
        self._log = get_logger(cluster=config.label)

    @property
    def settings(self) -> manifest.Settings:
        self._connect()
        assert self._settings is not None
        return self._settings

    @property
    def core(self) -> Any:
        self._connect()
        return self._core

    @property
    def batch(self) -> Any:
        self._connect()
        return self._batch

    @property
    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        self._connect()
        assert self._pool is not None
        return self._pool

    def _connect(self) -> None:
        with self._connected:
            if self._settings is not None:
                return
            configuration = kubernetes.client.Configuration()
            kubeconfig = self.config.option("kubeconfig")
            context = self.config.option("context")
            namespace = "default"
            in_cluster = not kubeconfig and "KUBERNETES_SERVICE_HOST" in os.environ
            try:
                if in_cluster:
                    kubernetes.config.load_incluster_config(client_configuration=configuration)
                    with open(IN_CLUSTER_NAMESPACE) as f:
                        namespace = f.read().strip() or namespace
                else:
                    path = os.path.expanduser(kubeconfig) if kubeconfig else None
                    kubernetes.config.load_kube_config(
                        config_file=path, context=context, client_configuration=configuration, persist_config=False
                    )
                    contexts, current = kubernetes.config.list_kube_config_contexts(path)
                    chosen = next((c for c in contexts if c["name"] == context), current) if context else current
                    namespace = (chosen or {}).get("context", {}).get("namespace") or namespace
            except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
                where = "in-cluster service account" if in_cluster else f"kubeconfig {kubeconfig or '(default)'}"
                raise BackendUnavailableError(f"{self.config.label}: cannot load the {where}: {exc}") from exc
            for value in (configuration.api_key or {}).values():
                register_secret(str(value).removeprefix("Bearer ").strip())
            settings = manifest.Settings.from_config(self.config, namespace)
            configuration.connection_pool_maxsize = settings.api_concurrency + 4
            self.host = configuration.host
            self._core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))
            self._batch = kubernetes.client.BatchV1Api(self._core.api_client)
            self._pool = concurrent.futures.ThreadPoolExecutor(
                settings.api_concurrency, thread_name_prefix="clustrix-k8s-api"
            )
            self._settings = settings

    def count(self, what: str) -> None:
        with self._counting:
            self.requests[what] += 1

    def request(
        self,
        what: str,
        call: Callable[..., Any],
        *args: Any,
        error: type[ClustrixError] = BackendUnavailableError,
        ok: tuple[int, ...] = (),
        raw: bool = False,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """One API request: (HTTP status, parsed JSON or the raw bytes). Failures raise ``error``
        with the API server's own words, except a status in ``ok`` (such as 404), which is returned."""
        self.count(what)
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        try:
            response = call(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            if exc.status in ok:
                return exc.status, None
            message = _api_message(exc)
            if exc.status in (0, 429) or exc.status >= 500:
                raise BackendUnavailableError(f"{self.config.label}: {what}: {message}") from exc
            raise error(f"{self.config.label}: {what}: {message}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise BackendUnavailableError(
                f"{self.config.label}: {what}: the API server at {self.host} did not answer: {exc}"
            ) from exc
        data = response.data
        if raw:
            return response.status, data
        return response.status, json.loads(data) if data else None

    def request_quietly(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, Any]:
        """A cleanup request: a failure is logged, not raised (0, None); a 404 is returned."""
        try:
            return self.request(what, call, *args, ok=(404,), **kwargs)
        except ClustrixError as exc:
            self._log.warning("cleanup request failed", what=what, error=str(exc))
            return 0, None

    def version(self) -> str:
        _, version = self.request("version", kubernetes.client.VersionApi(self.core.api_client).get_code)
        return version.get("gitVersion", "?")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)


def _api_message(exc: ApiException) -> str:
    """The API server's own words (its Status message), else the HTTP status line."""
    try:
        body = json.loads(exc.body)
        return f"{exc.status} {body.get('reason', exc.reason)}: {body['message']}"
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}".strip()
