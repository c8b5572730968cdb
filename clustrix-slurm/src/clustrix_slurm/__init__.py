"""clustrix plugin for Slurm: the ``slurm`` backend."""

from clustrix_slurm.backend import SlurmBackend

__all__ = ["SlurmBackend"]
