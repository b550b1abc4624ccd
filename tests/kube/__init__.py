"""Real Kubernetes for the tests: binaries built from source, clusters started by the tests.

See tests/kube/README.md for the API; ``python -m tests.kube --help`` for by-hand use.
"""

from .controlplane import ClusterOptions, ControlPlane, KubectlError, running_control_plane
from .tools import KubeToolsError, Tools, find_tools, versions

__all__ = [
    "ClusterOptions",
    "ControlPlane",
    "KubeToolsError",
    "KubectlError",
    "Tools",
    "find_tools",
    "running_control_plane",
    "versions",
]
