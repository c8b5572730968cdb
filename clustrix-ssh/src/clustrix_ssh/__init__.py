"""clustrix-ssh: the ``ssh`` backend (jobs as detached processes on an SSH host) and the ``ssh`` transport."""

from clustrix_ssh.backend import SSHBackend
from clustrix_ssh.transport import SSHTransport

__all__ = ["SSHBackend", "SSHTransport"]
