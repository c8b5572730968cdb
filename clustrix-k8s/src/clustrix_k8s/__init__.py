"""clustrix plugin for Kubernetes: the ``kubernetes`` backend."""

from clustrix_k8s.backend import KubernetesBackend

__all__ = ["KubernetesBackend"]
