"""PersistentVolumes on a folder of the one real node (tests/e2e, tests/infra, bench)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def node_volume(
    name: str,
    path: Path,
    node_name: str,
    *,
    size: str = "10Gi",
    storage_class: str = "",
    claim: tuple[str, str] | None = None,
    local: bool = False,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ReadWriteOnce PersistentVolume on `path` of node `node_name`, kept when released.

    hostPath by default (the folder must exist); `local=True` makes it a `local` volume,
    which needs a StorageClass. `claim` = (namespace, name) reserves it for one claim."""
    spec: dict[str, Any] = {
        "capacity": {"storage": size},
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": storage_class,
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node_name]},
        ]}]}},
    }
    if local:
        spec["local"] = {"path": str(path)}
    else:
        spec["hostPath"] = {"path": str(path), "type": "Directory"}
    if claim is not None:
        spec["claimRef"] = {"namespace": claim[0], "name": claim[1]}
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": metadata, "spec": spec}
