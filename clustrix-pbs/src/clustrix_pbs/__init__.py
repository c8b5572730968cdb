"""clustrix plugin for PBS Pro / OpenPBS and Torque: the ``pbs`` backend."""

from clustrix_pbs.backend import PbsBackend

__all__ = ["PbsBackend"]
