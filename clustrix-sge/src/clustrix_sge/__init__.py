"""clustrix plugin for (Son of) Grid Engine: the ``sge`` backend."""

from clustrix_sge.backend import SgeBackend

__all__ = ["SgeBackend"]
