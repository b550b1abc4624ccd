"""The kind node image's pure parts (tests/kube/kind.py) and the runtime wrapper.

The image itself is built and run by `make e2e-kind` (docs/kind.md); these check, without
docker, what kind's build and this machine's dockerd rely on.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

from tests.kube.kind import (
    KIND_KINDNETD,
    KIND_LOCAL_PATH,
    KIND_LOCAL_PATH_HELPER,
    RUNTIME_WRAPPER,
    _repack_with_repositories,
    component_images,
)

KUBEADM_LIST = [
    "registry.k8s.io/kube-apiserver:v1.34.4",
    "registry.k8s.io/kube-controller-manager:v1.34.4",
    "registry.k8s.io/kube-scheduler:v1.34.4",
    "registry.k8s.io/kube-proxy:v1.34.4",
    "registry.k8s.io/coredns/coredns:v1.12.1",
    "registry.k8s.io/pause:3.10.1",
    "registry.k8s.io/etcd:3.6.5-0",
]


def test_every_image_kubeadm_and_kind_preload_is_built_under_its_name() -> None:
    refs = [img.ref for img in component_images("v1.34.4", KUBEADM_LIST)]
    assert sorted(refs) == sorted(
        [*KUBEADM_LIST, KIND_LOCAL_PATH, KIND_LOCAL_PATH_HELPER, KIND_KINDNETD]
    )
    by_ref = {img.ref: img for img in component_images("v1.34.4", KUBEADM_LIST)}
    assert "FROM scratch" in by_ref["registry.k8s.io/pause:3.10.1"].dockerfile()
    assert 'ENTRYPOINT ["/coredns"]' in by_ref[KUBEADM_LIST[4]].dockerfile()
    assert "iptables" in by_ref[KUBEADM_LIST[3]].dockerfile()  # kube-proxy's own rules
    assert "never run" in by_ref[KIND_KINDNETD].dockerfile()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_a_multi_image_archive_names_every_image_in_its_first_metadata_entry(
    tmp_path: Path,
) -> None:
    src = tmp_path / "saved.tar"
    manifest = [
        {"Config": "aaa.json", "RepoTags": ["kindest/x:1"], "Layers": ["l1/layer.tar"]},
        {"Config": "bbb.json", "RepoTags": ["registry.k8s.io/y:2"], "Layers": ["l2/layer.tar"]},
    ]
    with tarfile.open(src, "w") as tf:
        _add(tf, "l1/layer.tar", b"one")
        _add(tf, "l2/layer.tar", b"two")
        _add(tf, "manifest.json", json.dumps(manifest).encode())
        _add(tf, "repositories", b'{"kindest/x": {"1": "l1"}}')
    dest = tmp_path / "out.tar"
    names = {"aaa": "docker.io/kindest/x:1", "bbb": "registry.k8s.io/y:2"}
    _repack_with_repositories(src, dest, names)
    with tarfile.open(dest) as tf:
        members = tf.getnames()
        assert members[0] == "repositories"  # kind reads the first metadata entry only
        assert members.count("repositories") == 1
        repos = json.load(tf.extractfile("repositories"))  # type: ignore[arg-type]
        assert repos == {"docker.io/kindest/x": {"1": "l1"}, "registry.k8s.io/y": {"2": "l2"}}
        assert tf.extractfile("l2/layer.tar").read() == b"two"  # type: ignore[union-attr]
        assert json.load(tf.extractfile("manifest.json")) == manifest  # type: ignore[arg-type]


def _spec(caps: list[str]) -> dict[str, object]:
    sets = {k: list(caps) for k in ("bounding", "effective", "permitted")}
    return {"process": {"capabilities": sets, "args": ["sh"]}}


def test_the_runtime_wrapper_drops_cap_sys_resource_before_create_and_exec(
    tmp_path: Path,
) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(_spec(["CAP_SYS_ADMIN", "CAP_SYS_RESOURCE"])))
    process = tmp_path / "process.json"
    process.write_text(json.dumps(_spec(["CAP_SYS_RESOURCE", "CAP_KILL"])["process"]))
    env = {"QFORGE_RUNC": "/bin/echo", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [str(RUNTIME_WRAPPER), "--root", "/r", "create", "--bundle", str(bundle), "c1"],
        capture_output=True, text=True, env=env, timeout=30, check=True,
    ).stdout
    assert out.split() == ["--root", "/r", "create", "--bundle", str(bundle), "c1"]
    caps = json.loads((bundle / "config.json").read_text())["process"]["capabilities"]
    assert all(v == ["CAP_SYS_ADMIN"] for v in caps.values())
    subprocess.run(
        [str(RUNTIME_WRAPPER), "exec", "--process", str(process), "c1"],
        capture_output=True, env=env, timeout=30, check=True,
    )
    caps = json.loads(process.read_text())["capabilities"]
    assert all(v == ["CAP_KILL"] for v in caps.values())
    # any other command passes through untouched
    (bundle / "config.json").write_text(json.dumps(_spec(["CAP_SYS_RESOURCE"])))
    subprocess.run([str(RUNTIME_WRAPPER), "state", "c1"], env=env, timeout=30, check=True,
                   capture_output=True)
    assert "CAP_SYS_RESOURCE" in (bundle / "config.json").read_text()
