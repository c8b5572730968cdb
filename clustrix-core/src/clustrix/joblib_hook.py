"""Makes ``backend="clustrix"`` known to joblib, without ``import clustrix`` importing joblib.

joblib looks a backend's name up in its own table (``register_parallel_backend``) and reads no
entry points, so some clustrix code must run in the process before the name can work. That is
``import clustrix``, which calls ``install``: the name is registered at once if joblib is already
imported, else by a finder on ``sys.meta_path`` that lets ``joblib.parallel`` load, registers the
name, and removes itself. What is registered is a factory: clustrix.joblib_backend (and joblib's
machinery it subclasses) is imported only when a ``Parallel`` uses the backend.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

    from clustrix.joblib_backend import ClustrixBackend

NAME = "clustrix"
_MODULE = "joblib.parallel"


def install() -> None:
    module = sys.modules.get(_MODULE)
    if module is not None:
        _register(module)
    else:
        sys.meta_path.insert(0, _JoblibFinder())


def backend(**settings: Any) -> ClustrixBackend:
    """The factory joblib calls with ``parallel_config``'s keywords (and its nesting level)."""
    from clustrix.joblib_backend import ClustrixBackend

    return ClustrixBackend(**settings)


def _register(module: ModuleType) -> None:
    module.register_parallel_backend(NAME, backend)


class _JoblibFinder:
    """Finds nothing itself: asks the other finders for ``joblib.parallel`` and registers once it ran."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name != _MODULE:
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module = _then_register(spec.loader.exec_module)  # type: ignore[method-assign]
                return spec
        return None


def _then_register(load: Callable[[ModuleType], None]) -> Callable[[ModuleType], None]:
    def load_then_register(module: ModuleType) -> None:
        load(module)
        _register(module)

    return load_then_register
