"""Where the Kubernetes test binaries live: pins in tools/k8s/versions.env, cache by version."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools" / "k8s" / "build.sh"
VERSIONS_FILE = REPO / "tools" / "k8s" / "versions.env"

# component -> binaries it provides (mirrors tools/k8s/build.sh)
COMPONENTS: dict[str, tuple[str, ...]] = {
    "kubernetes": (
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "kubectl",
        "pause",
    ),
    "etcd": ("etcd",),
    "kwok": ("kwok",),
    "helm": ("helm",),
    "actionlint": ("actionlint",),
}


class KubeToolsError(RuntimeError):
    """A user-facing failure of the test cluster tooling (printed as one clear message)."""


def cache_root() -> Path:
    return Path(os.environ.get("QFORGE_CACHE", "/var/cache/qforge"))


def versions() -> dict[str, str]:
    """The pins, e.g. {"kubernetes": "v1.34.4", "etcd": "v3.6.5", ...}."""
    pins: dict[str, str] = {}
    for raw in VERSIONS_FILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if key.endswith("_VERSION"):
            pins[key.removesuffix("_VERSION").lower()] = value.strip()
    return pins


@dataclass(frozen=True)
class Tools:
    """Absolute paths of every binary, by name (``tools.path("kubectl")``)."""

    paths: dict[str, Path]

    def path(self, name: str) -> Path:
        return self.paths[name]

    def __getitem__(self, name: str) -> Path:
        return self.paths[name]


def component_bin_dir(component: str) -> Path:
    version = versions()[component]
    return cache_root() / "k8s" / f"{component}-{version}" / "bin"


def missing_binaries() -> list[str]:
    missing = []
    for component, names in COMPONENTS.items():
        bin_dir = component_bin_dir(component)
        complete = (bin_dir.parent / ".complete").is_file()
        for name in names:
            if not complete or not os.access(bin_dir / name, os.X_OK):
                missing.append(f"{component}/{name}")
    return missing


def find_tools(build: bool = False) -> Tools:
    """Locate the binaries; build the missing ones first when ``build`` (slow when cold)."""
    missing = missing_binaries()
    if missing and build:
        proc = subprocess.run([str(BUILD_SCRIPT)], check=False)
        if proc.returncode != 0:
            raise KubeToolsError(f"building the Kubernetes test binaries failed ({BUILD_SCRIPT})")
        missing = missing_binaries()
    if missing:
        raise KubeToolsError(
            "Kubernetes test binaries are not built: "
            + ", ".join(missing)
            + " - run `make k8s-tools` (builds them from the Go module proxy into "
            + f"{cache_root() / 'k8s'})"
        )
    paths = {
        name: component_bin_dir(component) / name
        for component, names in COMPONENTS.items()
        for name in names
    }
    return Tools(paths)
