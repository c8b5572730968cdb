"""A job's exception comes back with its chain: ``raise X from Y`` and an exception raised while
handling another keep ``__cause__`` and ``__context__``, each link with its own type; a link that
cannot be pickled becomes a RemoteError naming its type."""

from __future__ import annotations

import threading

import pytest

from clustrix import RemoteError, cluster


class Unpicklable(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def raise_from():
    try:
        {}["missing"]
    except KeyError as exc:
        raise RuntimeError("lookup failed") from exc


def raise_during():
    try:
        1 / 0
    except ZeroDivisionError:
        raise ValueError("while handling")


def raise_from_unpicklable():
    try:
        raise Unpicklable("holds a lock")
    except Unpicklable as exc:
        raise OSError(5, "outer") from exc


def raise_suppressed():
    try:
        1 / 0
    except ZeroDivisionError:
        raise ValueError("no context") from None


def test_explicit_cause_keeps_its_type_and_message(local_profile):
    with pytest.raises(RuntimeError, match="lookup failed") as caught:
        cluster(profile=local_profile())(raise_from)()
    cause = caught.value.__cause__
    assert isinstance(cause, KeyError) and cause.args == ("missing",)


def test_implicit_context_comes_back(local_profile):
    with pytest.raises(ValueError, match="while handling") as caught:
        cluster(profile=local_profile())(raise_during)()
    assert caught.value.__cause__ is None
    assert isinstance(caught.value.__context__, ZeroDivisionError)


def test_an_unpicklable_link_becomes_a_remote_error(local_profile):
    with pytest.raises(OSError, match="outer") as caught:
        cluster(profile=local_profile())(raise_from_unpicklable)()
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteError) and cause.type_name.endswith("Unpicklable")
    assert "holds a lock" in str(cause)


def test_from_none_stays_without_context(local_profile):
    with pytest.raises(ValueError, match="no context") as caught:
        cluster(profile=local_profile())(raise_suppressed)()
    assert caught.value.__cause__ is None and caught.value.__context__ is None
