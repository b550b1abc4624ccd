"""Smoke tests of the real-Kubernetes test tooling (tests/kube)."""

from tests.kube.fixtures import control_plane, kube_tools

__all__ = ["control_plane", "kube_tools"]
