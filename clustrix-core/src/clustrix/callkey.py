"""The cache key of a call: a SHA-256 of what decides its result, the same in every process and on every machine.

Hashing the pickled call would not do: cloudpickle pickles a function of an importable module
by its name alone (an edit to its code would not change the key), and one it pickles by value
carries its file's path and line numbers (the key would change on another checkout) and its
sets in hash-seed order (it would change in the next process). So the key is built from a
canonical encoding of its own, version ``KEY_VERSION``, of:

- the function by value: its module and qualified name, its bytecode and constants (nested
  code too), names, argument counts and flags, its defaults, its closure's values, and the
  values of the globals its code names. A function or class met there is encoded by value
  when it belongs to the function's own module, ``__main__``, or a module registered with
  ``cloudpickle.register_pickle_by_value`` (what the payload carries by value), otherwise by
  its module and name only: an upgraded library does not change the key. A module is its name.
  Not in it: file names, line numbers, comments (a docstring is a constant: it is in);
- the Python version (``X.Y``: bytecode differs between versions);
- the settings that can change what the call returns: cores, gpus, nodes, tasks_per_node,
  queue, extra directives, env, setup lines, parallel and gather. Not the time limit, memory,
  account or name (they bound or label a run; a run that completes returns the same), nor the
  profile, backend, host, interpreter path or any other path;
- the arguments, positional and keyword as passed (``f(1)`` and ``f(x=1)`` are two keys).

Values are encoded by type: None, bool, int, float, complex, str, bytes, and tuples, lists and
dicts of them structurally (dicts and sets in sorted order, so the hash seed does not matter);
an instance of a class encoded by value by its class and its ``__reduce_ex__`` state; anything
else by its type's name and its pickle (``dumps``, the payload's serializer), so two equal values
built differently may key differently: a miss, never a wrong hit.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import cloudpickle

from clustrix.errors import SerializationError
from clustrix.resources import Resources

KEY_VERSION = 1
# The job settings besides the resources that can change a call's value.
RESULT_SETTINGS = ("env", "setup", "parallel", "gather")
# Class attributes that say nothing about what the class does.
_CLASS_NOISE = frozenset({"__dict__", "__weakref__", "__module__", "__doc__", "__qualname__", "__firstlineno__"})


def settings_part(resources: Resources, job: Mapping[str, Any]) -> dict[str, Any]:
    """What of a call's resources and job settings goes into its key (see the module's docstring)."""
    return {
        "cores": resources.cores,
        "gpus": resources.gpus,
        "nodes": resources.nodes,
        "tasks_per_node": resources.tasks_per_node,
        "queue": resources.queue,
        "extra": resources.extra,
        **{name: job[name] for name in RESULT_SETTINGS if name in job},
    }


class _Encoder:
    """Feeds a canonical, unambiguous encoding of values into a hash: each a tag, a length, its parts."""

    def __init__(self, home: str, dumps: Callable[[Any], bytes]) -> None:
        self._by_value = {home, "__main__", *cloudpickle.list_registry_pickle_by_value()}
        self._dumps = dumps
        # Functions and classes being encoded, so a recursive one is named, not followed again.
        self._open: set[int] = set()

    def digest(self, value: Any) -> bytes:
        h = hashlib.sha256()
        self.feed(h, value)
        return h.digest()

    def feed(self, h: Any, value: Any) -> None:
        kind = type(value)
        if value is None or kind in (bool, int, float, complex):
            self._atom(h, b"n", repr(value).encode())
        elif kind is str:
            self._atom(h, b"s", value.encode("utf-8", "surrogatepass"))
        elif kind in (bytes, bytearray):
            self._atom(h, b"b", bytes(value))
        elif kind in (tuple, list):
            self._atom(h, b"t" if kind is tuple else b"l", str(len(value)).encode())
            for item in value:
                self.feed(h, item)
        elif kind is dict:
            self._sorted(h, b"d", [self.digest(k) + self.digest(v) for k, v in value.items()])
        elif kind in (set, frozenset):
            self._sorted(h, b"e", [self.digest(item) for item in value])
        elif kind is types.CodeType:
            self._code(h, value)
        elif kind is types.FunctionType:
            self._function(h, value)
        elif kind is types.MethodType:
            self._atom(h, b"m", b"")
            self.feed(h, value.__self__)
            self.feed(h, value.__func__)
        elif kind is functools.partial:
            self._atom(h, b"p", b"")
            self.feed(h, (value.func, value.args, value.keywords))
        elif kind is types.ModuleType:
            self._atom(h, b"M", value.__name__.encode())
        elif isinstance(value, type):
            self._class(h, value)
        elif kind in (types.BuiltinFunctionType, types.WrapperDescriptorType, types.MethodDescriptorType):
            self._named(h, b"r", value)
        elif callable(getattr(value, "__wrapped__", None)):
            # A decorated function (a ClusterFunction among them): what it wraps is what runs.
            self._named(h, b"w", kind)
            self.feed(h, value.__wrapped__)
        elif kind.__module__ in self._by_value:
            # Its pickle would hold its class's code with file names and line numbers.
            self._instance(h, value)
        else:
            self._named(h, b"o", kind)
            self._atom(h, b"o", self._dumps(value))

    @staticmethod
    def _atom(h: Any, tag: bytes, data: bytes) -> None:
        h.update(tag + len(data).to_bytes(8, "big") + data)

    def _sorted(self, h: Any, tag: bytes, digests: list[bytes]) -> None:
        self._atom(h, tag, b"".join(sorted(digests)))

    def _named(self, h: Any, tag: bytes, value: Any) -> None:
        name = f"{getattr(value, '__module__', None)}:{getattr(value, '__qualname__', repr(value))}"
        self._atom(h, tag, name.encode())

    def _code(self, h: Any, code: types.CodeType) -> None:
        # co_filename, co_firstlineno and the line tables are left out: where the code is, not what it does.
        self._atom(h, b"c", code.co_code)
        self._atom(h, b"x", code.co_exceptiontable)
        counts = (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)
        self.feed(h, (code.co_qualname, counts, code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars))
        self.feed(h, code.co_consts)

    def _function(self, h: Any, fn: types.FunctionType) -> None:
        if fn.__module__ not in self._by_value:
            self._named(h, b"f", fn)
            return
        if id(fn) in self._open:
            self._named(h, b"R", fn)
            return
        self._open.add(id(fn))
        try:
            self._named(h, b"F", fn)
            self.feed(h, fn.__code__)
            self.feed(h, (fn.__defaults__, fn.__kwdefaults__))
            self.feed(h, tuple(_cell_value(cell) for cell in fn.__closure__ or ()))
            names = _global_names(fn.__code__)
            self.feed(h, {name: value for name, value in fn.__globals__.items() if name in names})
        finally:
            self._open.discard(id(fn))

    def _instance(self, h: Any, value: Any) -> None:
        reduced = value.__reduce_ex__(5)
        if isinstance(reduced, str):
            # A module-level singleton, pickled by its name.
            self._named(h, b"g", value)
            self._atom(h, b"g", reduced.encode())
            return
        self._atom(h, b"i", str(len(reduced)).encode())
        for part in reduced:
            # Items and dict items come as iterators.
            self.feed(h, part if part is None or not isinstance(part, Iterator) else list(part))

    def _class(self, h: Any, cls: type) -> None:
        if cls.__module__ not in self._by_value or id(cls) in self._open:
            self._named(h, b"k", cls)
            return
        self._open.add(id(cls))
        try:
            self._named(h, b"K", cls)
            self.feed(h, tuple(base for base in cls.__bases__))
            for name, member in sorted(vars(cls).items()):
                if name in _CLASS_NOISE:
                    continue
                if isinstance(member, staticmethod | classmethod):
                    member = member.__func__
                elif isinstance(member, property):
                    member = (member.fget, member.fset, member.fdel)
                self._atom(h, b"a", name.encode())
                self.feed(h, member)
        finally:
            self._open.discard(id(cls))


class _EmptyCell:
    """Stands for a closure cell not yet assigned."""

    __module__ = "clustrix.callkey"


def _cell_value(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return _EmptyCell


def _global_names(code: types.CodeType) -> set[str]:
    """The names a code object and the code nested in it load: globals among them."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


@attrs.frozen
class FunctionKey:
    """The part of the key shared by every call of one function with one set of settings (hashed once per map)."""

    digest: bytes
    home: str
    dumps: Callable[[Any], bytes] = attrs.field(repr=False)

    @classmethod
    def of(cls, fn: Callable[..., Any], settings: Mapping[str, Any], dumps: Callable[[Any], bytes]) -> FunctionKey:
        """SerializationError when something the function uses can be neither encoded nor pickled."""
        home = getattr(fn, "__module__", None) or "__main__"
        python = "{}.{}".format(*sys.version_info[:2])
        parts = ("clustrix-cache", KEY_VERSION, python, fn, dict(settings))
        return cls(
            _hashed(f"function {getattr(fn, '__qualname__', fn)!r}", lambda: _Encoder(home, dumps).digest(parts)),
            home,
            dumps,
        )

    def call(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """The key of one call of the function: 64 hex digits. SerializationError as ``of``."""
        h = hashlib.sha256(self.digest)
        _hashed("a call's arguments", lambda: _Encoder(self.home, self.dumps).feed(h, (tuple(args), dict(kwargs))))
        return h.hexdigest()


def _hashed(what: str, encode: Callable[[], Any]) -> Any:
    """``encode()``; what cannot be encoded is a SerializationError naming ``what`` (never its values)."""
    try:
        return encode()
    except Exception as exc:
        raise SerializationError(
            f"cannot compute the cache key of the {what}: {type(exc).__name__}; nothing was submitted"
        ) from exc
