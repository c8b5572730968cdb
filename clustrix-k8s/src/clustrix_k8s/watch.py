"""One list-then-watch loop over one kind of object in one namespace with one label selector.

A thread lists once, hands the whole list over (``on_reset``), then watches from the
list's resourceVersion and hands over each event (``on_event``). A watch that the
server ends (its ``timeout_seconds``) is resumed from the last resourceVersion seen;
a 410 Gone (that version was compacted away) or a broken connection (the API server
restarted) is followed by a fresh list and a new watch. So the cost is a couple of
requests a minute, however many objects there are. ``healthy`` says whether the
cache is current; ``error`` says why not.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

from clustrix.log import get_logger

# The server ends each watch after this long; the client then resumes it from where it was.
WATCH_SECONDS = 60
# Nothing at all for this long on an open watch means the connection is dead.
READ_TIMEOUT = WATCH_SECONDS + 30
CONNECT_TIMEOUT = 10
RETRY_MIN, RETRY_MAX = 0.2, 5.0
# How long closing the backend waits for a watch thread to end.
STOP_TIMEOUT = 10


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


def lines(response: Any) -> Iterator[str]:
    """The newline-separated JSON documents of a streamed watch response."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line.decode("utf-8", errors="replace")
    if buffer.strip():
        yield buffer.decode("utf-8", errors="replace")


class Watcher:
    """``list_call(**kwargs)`` is the API's list function for the kind (namespace and selector bound).

    It is called with ``watch=False`` to list and ``watch=True`` (plus a resourceVersion)
    to watch, always with ``_preload_content=False``; ``count(what)`` is told of every request.
    """

    def __init__(
        self,
        kind: str,
        list_call: Callable[..., Any],
        on_reset: Callable[[list[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
        count: Callable[[str], None],
    ) -> None:
        self.kind = kind
        self._list = list_call
        self._on_reset = on_reset
        self._on_event = on_event
        self._count = count
        self.healthy = False
        self.error: str | None = None
        self.failing_since: float | None = None
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._response: Any = None
        self._log = get_logger(watch=kind)
        self._thread = threading.Thread(target=self._run, name=f"clustrix-k8s-watch[{kind}]", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the watch and wait (briefly) for its thread, so nothing reads on after close."""
        self._stop.set()
        sock = getattr(getattr(self._response, "connection", None), "sock", None)
        if sock is not None:
            # shutdown, not close: close waits for the lock the thread's blocked read holds,
            # which is up to a whole watch (a program's exit hung on it); shutdown ends the read.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(STOP_TIMEOUT)

    def _run(self) -> None:
        delay = RETRY_MIN
        while not self._stop.is_set():
            try:
                version = self._relist()
                delay = RETRY_MIN
                while not self._stop.is_set():
                    version = self._watch(version)
            except Gone:
                self._log.debug("watch expired, listing again")
                continue
            except Exception as exc:  # noqa: BLE001 - any failure: say so, wait, list again
                if self._stop.is_set():
                    return
                first = self.healthy or self.error is None
                self.healthy = False
                self.error = f"{type(exc).__name__}: {exc}"[:500]
                self.failing_since = self.failing_since or time.monotonic()
                # Once per outage at warning level; the retries after it only at debug level.
                log = self._log.warning if first else self._log.debug
                log("watch failed, retrying", error=self.error, retry_in=round(delay, 2))
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX)

    def _relist(self) -> str:
        self._count(f"list {self.kind}")
        response = self._list(watch=False, _preload_content=False, _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        data = json.loads(response.data)
        self._on_reset(data.get("items") or [])
        self.healthy, self.error, self.failing_since = True, None, None
        self.synced.set()
        return data["metadata"]["resourceVersion"]

    def _watch(self, version: str) -> str:
        """One watch request, until the server ends it; returns the last resourceVersion seen."""
        self._count(f"watch {self.kind}")
        try:
            self._response = self._list(
                watch=True,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
        except ApiException as exc:
            if exc.status == 410:
                raise Gone(str(exc.reason)) from exc
            raise
        try:
            for line in lines(self._response):
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message", ""))
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
                version = obj.get("metadata", {}).get("resourceVersion") or version
                if kind != "BOOKMARK":
                    self._on_event(kind, obj)
        finally:
            self._response.release_conn()
            self._response = None
        return version
