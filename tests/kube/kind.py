"""kind on this machine, without a registry: its dockerd, a node image built here.

``python -m tests.kube.kind image``  build (or reuse) the kind node image
``python -m tests.kube.kind e2e``    `make e2e-kind`: the workflow's steps on that image

- ``KindDocker``: a dockerd of its own (socket and exec root under /run/qforge-kind-docker,
  data root ``$QFORGE_CACHE/docker-kind``), with what kind needs and the others lack:
  user-defined bridge networks (kind's "kind" network; no docker0, no iptables rules of
  dockerd's own, an address pool apart from the usual 172.17-172.20), private cgroup
  namespaces, and tools/kind/runc-no-sys-resource as the default runtime (this machine's
  capability bounding set lacks CAP_SYS_RESOURCE; kind's nodes are privileged).
- ``ensure_node_image``: every part from the Go module proxy or Debian's archive
  (tools/k8s/build.sh), each image built here with docker, then
  ``kind build node-image --type file``. The image is tagged with the Kubernetes version
  and a hash of its recipe, and reused while the recipe holds. Every step prints its
  progress; a failure names the step and its log.
- ``run_e2e``: the cluster config for this machine (tools/kind/cluster-here.yaml), then
  ``tools/kind/e2e.sh all`` -- the subcommands .github/workflows/e2e.yaml runs as steps.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .images import Docker, ensure_base_image
from .procs import tail
from .tools import BUILD_SCRIPT, REPO, KubeToolsError, cache_root, versions

KIND_DIR = REPO / "tools" / "kind"
RUNTIME_WRAPPER = KIND_DIR / "runc-no-sys-resource"
CLUSTER_CONFIG = KIND_DIR / "cluster-here.yaml"
E2E_SCRIPT = KIND_DIR / "e2e.sh"
BASE_REPO = "qforge.local/kind-base"
NODE_REPO = "qforge.local/kind-node"
CLUSTER = "qforge-e2e"
# Binaries the node image is made of (tools/k8s/build.sh components).
PARTS = ("kubernetes", "etcd", "kind", "kubeadm", "crictl", "coredns", "local-path-provisioner")
# kind v0.30.0 preloads these into every node image (pkg/build/nodeimage/const_*.go);
# `kind build node-image` fails unless each is there. The kindnetd name carries no
# kindnetd (its module is not served here): the cluster runs with disableDefaultCNI and
# the node's static bridge CNI config, so that image is never started.
KIND_KINDNETD = "docker.io/kindest/kindnetd:v20250512-df8de77b"
KIND_LOCAL_PATH = "docker.io/kindest/local-path-provisioner:v20250214-acbabc1a"
KIND_LOCAL_PATH_HELPER = "docker.io/kindest/local-path-helper:v20241212-8ac705d0"


def kind_cache() -> Path:
    return cache_root() / "kind"


class KindDocker(Docker):
    def __init__(self, run_dir: Path | None = None) -> None:
        super().__init__(run_dir)
        self.state = Path("/run/qforge-kind-docker")
        self.data_root = cache_root() / "docker-kind"
        self.socket = self.state / "docker.sock"
        self.host = f"unix://{self.socket}"
        if run_dir is None:
            self.log_dir = kind_cache() / "logs"
            self.supervisor.log_dir = self.log_dir

    def daemon_args(self, pidfile: Path) -> list[str]:
        return [
            *super().daemon_args(pidfile),
            "--add-runtime",
            f"qforge-runc={RUNTIME_WRAPPER}",
            "--default-runtime",
            "qforge-runc",
            "--default-cgroupns-mode",
            "private",
            "--default-address-pool",
            "base=172.29.0.0/16,size=24",
        ]


    def stop(self) -> None:
        """kind's network goes first: dockerd leaves a network's bridge on the host."""
        if self.running():
            nets = self.docker("network", "ls", "--filter", "type=custom", "--format",
                               "{{.Name}}").split()
            for net in nets:
                proc = subprocess.run(
                    [self.cli, "network", "rm", net],
                    capture_output=True,
                    text=True,
                    env=self.env(),
                    timeout=60,
                    check=False,
                )
                if proc.returncode != 0:
                    print(f"kind dockerd: network {net} kept: {proc.stderr.strip()}",
                          file=sys.stderr)
        super().stop()


# --------------------------------------------------------------------------- steps


def _fmt(secs: float) -> str:
    return f"{int(secs) // 60}m{int(secs) % 60:02d}s"


def run_step(
    label: str,
    argv: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    timeout: float = 3600,
    cwd: Path | None = None,
) -> None:
    """Run one build step, output appended to ``log``; a heartbeat every 20 s."""
    t0 = time.monotonic()
    print(f"   - {label}", flush=True)
    with open(log, "a") as out:
        out.write(f"\n=== {label}\n$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
        try:
            while True:
                try:
                    rc = proc.wait(timeout=20)
                    break
                except subprocess.TimeoutExpired:
                    took = time.monotonic() - t0
                    if took > timeout:
                        proc.kill()
                        proc.wait()
                        raise KubeToolsError(
                            f"step '{label}' timed out after {timeout:.0f}s; log {log}"
                        ) from None
                    print(f"     ... {label}: {_fmt(took)} ({log})", flush=True)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
    if rc != 0:
        raise KubeToolsError(
            f"step '{label}' failed (exit {rc}); log {log}, last lines:\n{tail(log, 25)}"
        )


# --------------------------------------------------------------------------- the images


@dataclass(frozen=True)
class Image:
    """A component image: the debootstrap base (or nothing) plus binaries."""

    ref: str
    binaries: tuple[tuple[str, str], ...]  # (component/binary, path in the image)
    packages: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    scratch: bool = False
    note: str = ""

    def dockerfile(self) -> str:
        lines = [
            "FROM scratch" if self.scratch else "FROM debian:bookworm-slim",
            f'LABEL org.qforge.kind.image="{self.ref}"',
        ]
        if self.note:
            lines.append(f'LABEL org.qforge.kind.note="{self.note}"')
        if self.packages:
            lines.append(
                "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
                f"--no-install-recommends {' '.join(self.packages)} "
                "&& rm -rf /var/lib/apt/lists/*"
            )
        for i, (_, dest) in enumerate(self.binaries):
            lines.append(f"COPY bin{i} {dest}")
        if self.entrypoint:
            lines.append(f"ENTRYPOINT {json.dumps(list(self.entrypoint))}")
        return "\n".join(lines) + "\n"


def component_images(kube_version: str, kubeadm_images: list[str]) -> list[Image]:
    """Every image the node needs, named as kubeadm (its image list) and kind expect."""
    by_name = {ref.rsplit(":", 1)[0].rsplit("/", 1)[-1]: ref for ref in kubeadm_images}
    ub = "/usr/local/bin/"
    images = [
        Image(f"registry.k8s.io/{c}:{kube_version}", ((f"kubernetes/{c}", ub + c),))
        for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    ]
    images.append(
        Image(
            f"registry.k8s.io/kube-proxy:{kube_version}",
            (("kubernetes/kube-proxy", ub + "kube-proxy"),),
            packages=("iptables", "conntrack", "nftables"),
        )
    )
    images += [
        Image(by_name["etcd"], (("etcd/etcd", ub + "etcd"),)),
        Image(
            by_name["coredns"], (("coredns/coredns", "/coredns"),), entrypoint=("/coredns",)
        ),
        Image(
            by_name["pause"],
            (("kubernetes/pause", "/pause"),),
            entrypoint=("/pause",),
            scratch=True,
        ),
        Image(KIND_LOCAL_PATH, (("local-path-provisioner/local-path-provisioner", ub
                                  + "local-path-provisioner"),)),
        Image(KIND_LOCAL_PATH_HELPER, ()),  # runs `sh` scripts: the Debian base has them
        Image(
            KIND_KINDNETD,
            (),
            entrypoint=("sh", "-c", "echo 'not kindnetd: the cluster runs without it' >&2; exit 1"),
            note="placeholder under the name kind preloads; disableDefaultCNI, never run",
        ),
    ]
    return images


def bin_dir(component: str) -> Path:
    """A tools/k8s/build.sh component's cache folder (kubeadm: at the Kubernetes pin)."""
    key = "kubernetes" if component == "kubeadm" else component.replace("-", "_")
    return cache_root() / "k8s" / f"{component}-{versions()[key]}" / "bin"


# Raise when the way the images are made here changes (component_images, the tarball).
RECIPE = "1"


def recipe_hash() -> str:
    """What the node image is made from: the pins, the base's files, RECIPE."""
    h = hashlib.sha256(RECIPE.encode())
    files = [REPO / "tools" / "k8s" / "versions.env"]
    files += sorted(p for p in (KIND_DIR / "base").rglob("*") if p.is_file())
    for path in files:
        h.update(str(path.relative_to(REPO)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def node_image_ref() -> str:
    return f"{NODE_REPO}:{versions()['kubernetes']}-{recipe_hash()}"


def _repack_with_repositories(src: Path, dest: Path, names: dict[str, str]) -> None:
    """A `docker save` archive holding several images, rewritten so that its first
    metadata entry is a ``repositories`` file naming every image: kind takes the tags of
    an archive from its first metadata entry only, and compares them with the names it
    preloads as strings (``docker.io/`` spelled out). ``names``: image id -> full name."""
    with tarfile.open(src) as tin:
        manifest = json.load(tin.extractfile("manifest.json"))  # type: ignore[arg-type]
        repos: dict[str, dict[str, str]] = {}
        for entry in manifest:
            layer_id = entry["Layers"][-1].split("/")[0] if entry["Layers"] else ""
            config_id = entry["Config"].split(".")[0]
            full = names[config_id]
            repo, _, tag = full.rpartition(":")
            repos.setdefault(repo, {})[tag] = layer_id
        data = json.dumps(repos).encode()
        with tarfile.open(dest, "w") as tout:
            info = tarfile.TarInfo("repositories")
            info.size = len(data)
            info.mode = 0o644
            tout.addfile(info, io.BytesIO(data))
            for member in tin.getmembers():
                if member.name == "repositories":
                    continue
                tout.addfile(member, tin.extractfile(member) if member.isfile() else None)


def ensure_node_image(docker: Docker, force: bool = False) -> str:
    """Build (or reuse) the node image in ``docker``; returns its reference."""
    ref = node_image_ref()
    if not force and docker.image_exists(ref):
        print(f">> kind node image {ref}: cached (docker data root {docker.data_root})")
        return ref
    logs = kind_cache() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"node-image-{ref.rsplit(':', 1)[1]}.log"
    log.write_text("")
    t_all = time.monotonic()
    total = 6
    print(f">> kind node image {ref}: building (log {log})", flush=True)
    env = docker.env()
    kube_version = versions()["kubernetes"]

    print(f">> [1/{total}] binaries from the Go module proxy (tools/k8s/build.sh)", flush=True)
    run_step("tools/k8s/build.sh " + " ".join(PARTS), [str(BUILD_SCRIPT), *PARTS], log,
             timeout=5400)
    kind = bin_dir("kind") / "kind"
    kubeadm = bin_dir("kubeadm") / "kubeadm"

    print(f">> [2/{total}] Debian base (debootstrap) in the kind dockerd", flush=True)
    t0 = time.monotonic()
    try:
        ensure_base_image(docker, log)
    except KubeToolsError as exc:
        raise KubeToolsError(f"step 'Debian base image' failed: {exc}") from None
    print(f"     base ready in {_fmt(time.monotonic() - t0)}", flush=True)

    with tempfile.TemporaryDirectory(dir=kind_cache(), prefix="build-") as tmp:
        work = Path(tmp)
        print(f">> [3/{total}] the node's base image (tools/kind/base)", flush=True)
        base_ref = f"{BASE_REPO}:{recipe_hash()}"
        if docker.image_exists(base_ref):
            print(f"     {base_ref}: cached", flush=True)
        else:
            ctx = work / "base"
            shutil.copytree(KIND_DIR / "base", ctx)
            (ctx / "bin").mkdir()
            shutil.copy(bin_dir("crictl") / "crictl", ctx / "bin" / "crictl")
            run_step(
                f"docker build {base_ref}",
                [docker.cli, "build", "--network", "host", "-t", base_ref, str(ctx)],
                log,
                env,
                timeout=1800,
            )

        print(f">> [4/{total}] component images from the binaries", flush=True)
        listed = subprocess.run(
            [str(kubeadm), "config", "images", "list", "--kubernetes-version", kube_version],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.split()
        images = component_images(kube_version, listed)
        for img in images:
            ctx = work / "img"
            shutil.rmtree(ctx, ignore_errors=True)
            ctx.mkdir()
            for i, (src, _) in enumerate(img.binaries):
                comp, name = src.split("/", 1)
                shutil.copy(bin_dir(comp) / name, ctx / f"bin{i}")
            (ctx / "Dockerfile").write_text(img.dockerfile())
            run_step(
                f"docker build {img.ref}",
                [docker.cli, "build", "--network", "host", "-t", img.ref, str(ctx)],
                log,
                env,
                timeout=1200,
            )

        print(f">> [5/{total}] the Kubernetes tarball (kind build node-image --type file)",
              flush=True)
        server_bin = work / "kubernetes" / "server" / "bin"
        server_bin.mkdir(parents=True)
        (work / "kubernetes" / "version").write_text(kube_version + "\n")
        for name, comp in (("kubeadm", "kubeadm"), ("kubelet", "kubernetes"),
                           ("kubectl", "kubernetes")):
            shutil.copy(bin_dir(comp) / name, server_bin / name)
        own = {f"registry.k8s.io/{c}:{kube_version}" for c in
               ("kube-apiserver", "kube-controller-manager", "kube-scheduler")}
        for img in images:
            if img.ref in own:
                name = img.ref.split("/")[-1].split(":")[0]
                run_step(f"docker save {img.ref}",
                         [docker.cli, "save", "-o", str(server_bin / f"{name}.tar"), img.ref],
                         log, env)
        # kube-proxy.tar carries kube-proxy and every other image the node preloads
        rest = [img.ref for img in images if img.ref not in own]
        raw = work / "rest.tar"
        run_step("docker save " + " ".join(rest), [docker.cli, "save", "-o", str(raw), *rest],
                 log, env)
        ids = {
            docker.docker("image", "inspect", "--format", "{{.Id}}", r).strip()
            .removeprefix("sha256:"): r
            for r in rest
        }
        _repack_with_repositories(raw, server_bin / "kube-proxy.tar", ids)
        raw.unlink()
        tarball = work / f"kubernetes-{kube_version}.tar.gz"
        run_step("tar czf the Kubernetes tarball",
                 ["tar", "-C", str(work), "--use-compress-program", "gzip -1", "-cf",
                  str(tarball), "kubernetes"], log)

        print(f">> [6/{total}] kind build node-image", flush=True)
        run_step(
            f"kind build node-image --type file --base-image {base_ref}",
            [str(kind), "build", "node-image", "--type", "file", str(tarball),
             "--base-image", base_ref, "--image", ref],
            log,
            env,
            timeout=1800,
        )
    prune_old(docker, ref, base_ref)
    size = int(docker.docker("image", "inspect", "--format", "{{.Size}}", ref).strip())
    took = time.monotonic() - t_all
    (kind_cache() / f"{ref.rsplit(':', 1)[1]}.complete").write_text(
        json.dumps({"image": ref, "seconds": round(took), "size": size}) + "\n"
    )
    print(f">> kind node image {ref}: built in {_fmt(took)}, {size / 1e6:.0f} MB", flush=True)
    return ref


def prune_old(docker: Docker, *keep: str) -> None:
    """Node and base images of earlier recipes (1.7 GB each) leave the data root."""
    for repo in (NODE_REPO, BASE_REPO):
        listed = docker.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repo)
        old = [r for r in listed.split() if r not in keep]
        if old:
            docker.docker("rmi", *old, what="docker rmi of earlier kind images")
    docker.docker("image", "prune", "-f", what="docker image prune")


# --------------------------------------------------------------------------- e2e


def tool_path() -> list[str]:
    """kind, kubectl and helm from the cache, ahead of whatever PATH holds."""
    return [str(bin_dir("kind")), str(bin_dir("kubernetes")), str(bin_dir("helm"))]


def run_e2e(docker: KindDocker, python: str) -> int:
    from tests.e2e.images import add_site_ca

    t0 = time.monotonic()
    image = ensure_node_image(docker)
    log = kind_cache() / "logs" / "e2e-images.log"
    add_site_ca(docker, ensure_base_image(docker, log), log)
    run = kind_cache() / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    env = docker.env()
    env.update(
        {
            "PATH": os.pathsep.join([*tool_path(), env.get("PATH", "")]),
            "KUBECONFIG": str(run / "kubeconfig"),
            "KIND_NODE_IMAGE": image,
            "KIND_CONFIG": str(CLUSTER_CONFIG),
            "CLUSTER": CLUSTER,
            "PYTHON": python,
            "QFORGE_E2E_LOAD": "kind",
            "QFORGE_E2E_ARTIFACTS": str(run / "e2e-artifacts"),
        }
    )
    env.setdefault("QFORGE_E2E_RUNNER_IMAGE", "qforge-runner:e2e")
    env.setdefault("QFORGE_E2E_CONTROLLER_IMAGE", "qforge-controller:e2e")
    print(f">> e2e on kind: node image ready in {_fmt(time.monotonic() - t0)}", flush=True)
    try:
        rc = subprocess.run(["bash", str(E2E_SCRIPT), "all"], env=env, cwd=REPO,
                            check=False).returncode
    finally:
        # whatever happened to the script: no cluster of ours is left behind
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run([str(bin_dir("kind") / "kind"), "delete", "cluster", "--name",
                            CLUSTER], env=env, capture_output=True, timeout=180, check=False)
    print(f">> e2e on kind: {'passed' if rc == 0 else 'FAILED'} in "
          f"{_fmt(time.monotonic() - t0)} (artifacts under {run})", flush=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kube.kind", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["image", "e2e"])
    parser.add_argument("--rebuild", action="store_true", help="image: build even if cached")
    args = parser.parse_args(argv)
    docker = KindDocker()
    try:
        docker.start()
        started = docker.daemon is not None
        try:
            if args.command == "image":
                print(ensure_node_image(docker, force=args.rebuild))
                return 0
            return run_e2e(docker, sys.executable)
        finally:
            if started:
                docker.stop()
    except KubeToolsError as exc:
        print(f"kind: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
