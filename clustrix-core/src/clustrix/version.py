"""The installed clustrix-core version, recorded in every envelope."""

from importlib.metadata import version

__version__ = version("clustrix-core")
