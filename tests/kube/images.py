"""Container images without a registry.

- ``Docker``: Debian's dockerd, started and stopped by the tooling (no bridge, no iptables
  rules: builds use the host network), its data kept under the cache.
- ``ensure_base_image``: a Debian base made with debootstrap, imported into docker and
  tagged with every ``debian:*`` name the repository's Dockerfiles use in FROM, so the
  same Dockerfiles build here and anywhere else.
- ``ensure_pause_image``: the pod sandbox image, from the pause binary compiled out of
  the Kubernetes module's own C source (tools/k8s/build.sh).
- ``load_into_containerd``: ``docker save`` piped into ``ctr -n k8s.io images import``.

The Debian mirror is read from this machine's apt sources at run time.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from .procs import Daemon, Supervisor, pid_alive, wait_until
from .tools import REPO, KubeToolsError, Tools, cache_root

SUITE = "bookworm"
BASE_TAGS = ("debian:bookworm-slim", "debian:bookworm", "debian:12-slim", "debian:12")
PAUSE_IMAGE = "localhost/qforge/pause:3.10.1"


def images_cache() -> Path:
    return cache_root() / "images"


def debian_mirror(suite: str = SUITE) -> str:
    """The Debian archive URL this machine's apt uses for ``suite`` (not the security one)."""
    candidates: list[str] = []
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith((" ", "\t", "#")) or ":" not in line:
                        continue
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
                if fields.get("enabled", "yes") == "no":
                    continue
                suites = fields.get("suites", "").split()
                if suite in suites and "deb" in fields.get("types", "deb").split():
                    candidates += fields.get("uris", "").split()
        elif path.suffix == ".list" or path.name == "sources.list":
            for line in text.splitlines():
                parts = line.split("#", 1)[0].split()
                if len(parts) >= 3 and parts[0] == "deb":
                    rest = [p for p in parts[1:] if not p.startswith("[")]
                    if len(rest) >= 2 and rest[1] == suite:
                        candidates.append(rest[0])
    for uri in candidates:
        if uri.startswith(("http://", "https://")):
            return uri
    raise KubeToolsError(f"no Debian mirror for suite {suite!r} found in /etc/apt/sources.list*")


def _run(
    argv: list[str], what: str, log: Path | None = None, timeout: float = 900, **kw: object
) -> str:
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kw,  # type: ignore[call-overload]
        )
    except subprocess.TimeoutExpired as exc:
        raise KubeToolsError(f"{what}: timed out after {timeout:.0f}s") from exc
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        where = f" (log {log})" if log else ""
        raise KubeToolsError(
            f"{what} failed{where}: {(proc.stderr or proc.stdout).strip()[-1500:]}"
        )
    return str(proc.stdout)


class Docker:
    """A dockerd of our own: socket, exec root and pid file under /run/qforge-docker."""

    def __init__(self, run_dir: Path | None = None) -> None:
        self.state = Path("/run/qforge-docker")
        self.data_root = cache_root() / "docker"
        self.socket = self.state / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.log_dir = run_dir or (self.state / "logs")
        self.supervisor = Supervisor(self.log_dir)
        self.daemon: Daemon | None = None
        self.cli = shutil.which("docker", path="/usr/bin") or shutil.which("docker") or "docker"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_HOST"] = self.host
        env["DOCKER_BUILDKIT"] = "0"  # Debian's dockerd 20.10 without buildx: classic builder
        return env

    def docker(
        self, *args: str, what: str = "", timeout: float = 900, log: Path | None = None
    ) -> str:
        return _run([self.cli, *args], what or f"docker {args[0]}", log, timeout, env=self.env())

    def running(self) -> bool:
        if not self.socket.exists():
            return False
        proc = subprocess.run(
            [self.cli, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=10,
            check=False,
        )
        return proc.returncode == 0

    def start(self, timeout: float = 60) -> None:
        """Start dockerd unless ours already runs (then it is shared, and left running)."""
        if self.running():
            return
        dockerd = shutil.which("dockerd")
        if not dockerd:
            raise KubeToolsError(
                "dockerd is not installed (apt-get install docker.io; `make node-deps`)"
            )
        self.cleanup()  # what a dockerd that was killed left behind
        self.state.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        pidfile = self.state / "dockerd.pid"
        with contextlib.suppress(OSError, ValueError):
            old = int(pidfile.read_text())
            if not pid_alive(old):
                pidfile.unlink()
        self.daemon = self.supervisor.start("dockerd", [dockerd, *self.daemon_args(pidfile)])
        wait_until(f"dockerd ({self.host})", self.running, timeout, self.supervisor, interval=0.5)

    def daemon_args(self, pidfile: Path) -> list[str]:
        """dockerd's flags: no bridge, no iptables rules (builds use the host network)."""
        return [
            "--host",
            self.host,
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.state / "exec"),
            "--pidfile",
            str(pidfile),
            "--storage-driver",
            "overlay2",
            "--exec-opt",
            "native.cgroupdriver=cgroupfs",
            "--bridge",
            "none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
        ]

    def stop(self) -> None:
        self.supervisor.stop_all()
        self.daemon = None
        self.cleanup()

    def cleanup(self) -> None:
        """After our dockerd stopped: its network-namespace mount and exec folders."""
        prefix = str(self.state) + "/"
        with open("/proc/self/mountinfo") as f:
            mounted = [line.split()[4] for line in f]
        points = [p for p in mounted if p.startswith(prefix)]
        # dockerd bind-mounts its data root onto itself (private propagation) and leaves it
        points += [p for p in mounted if p == str(self.data_root)]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        for leftover in ("exec", "containerd"):
            shutil.rmtree(self.state / leftover, ignore_errors=True)

    def image_exists(self, ref: str) -> bool:
        proc = subprocess.run(
            [self.cli, "image", "inspect", ref],
            capture_output=True,
            env=self.env(),
            timeout=30,
            check=False,
        )
        return proc.returncode == 0

    def build(
        self,
        context: Path,
        tag: str,
        dockerfile: Path | None = None,
        log: Path | None = None,
        timeout: float = 1800,
    ) -> None:
        """``docker build`` on the host network (our dockerd has no bridge)."""
        args = ["build", "--network", "host", "-t", tag]
        if dockerfile is not None:
            args += ["-f", str(dockerfile)]
        self.docker(*args, str(context), what=f"docker build -t {tag}", timeout=timeout, log=log)


def dockerfile_base_tags(repo: Path = REPO) -> list[str]:
    """The ``debian:*`` images the repository's Dockerfiles start FROM."""
    tags = set(BASE_TAGS)
    for dockerfile in repo.glob("Dockerfile*"):
        for line in dockerfile.read_text(errors="replace").splitlines():
            m = re.match(r"\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", line, re.IGNORECASE)
            if m and re.fullmatch(r"(docker\.io/)?(library/)?debian:[\w.-]+", m.group(1)):
                tags.add(m.group(1))
    return sorted(tags)


def base_rootfs_tar(log: Path) -> Path:
    """debootstrap minbase of Debian bookworm, as a tar, cached under the images cache."""
    tar = images_cache() / f"debian-{SUITE}-minbase.tar"
    if tar.exists():
        return tar
    if not shutil.which("debootstrap"):
        raise KubeToolsError(
            "debootstrap is not installed (apt-get install debootstrap; `make node-deps`)"
        )
    images_cache().mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(dir=images_cache(), prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        print(
            f">> debootstrap {SUITE} (minbase) from this machine's apt mirror (log {log})",
            file=sys.stderr,
        )
        t0 = time.monotonic()
        _run(
            ["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
            "debootstrap",
            log,
            timeout=1200,
        )
        # what a slim base image leaves out: apt lists and caches
        for sub in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for entry in (rootfs / sub).glob("*"):
                if entry.is_file():
                    entry.unlink()
        partial = tar.with_suffix(".partial")
        with tarfile.open(partial, "w") as tf:
            tf.add(rootfs, arcname=".")
        partial.replace(tar)
        print(f">> base rootfs ready in {time.monotonic() - t0:.0f}s: {tar}", file=sys.stderr)
    return tar


def ensure_base_image(docker: Docker, log: Path) -> list[str]:
    """Import the debootstrap base into docker under every Debian tag the Dockerfiles use."""
    tags = dockerfile_base_tags()
    missing = [t for t in tags if not docker.image_exists(t)]
    if not missing:
        return tags
    source = next((t for t in tags if t not in missing), None)
    if source is None:
        tar = base_rootfs_tar(log)
        _run(
            [docker.cli, "import", "--change", 'CMD ["bash"]', str(tar), missing[0]],
            "docker import of the base rootfs",
            log,
            env=docker.env(),
        )
        source = missing[0]
    for tag in missing:
        if tag != source:
            docker.docker("tag", source, tag)
    return tags


def ensure_pause_image(docker: Docker, tools: Tools, log: Path) -> str:
    if docker.image_exists(PAUSE_IMAGE):
        return PAUSE_IMAGE
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "pause.tar"
        with tarfile.open(tar, "w") as tf:
            tf.add(tools["pause"], arcname="pause")
        _run(
            [
                docker.cli,
                "import",
                "--change",
                'ENTRYPOINT ["/pause"]',
                "--change",
                "USER 65535:65535",
                str(tar),
                PAUSE_IMAGE,
            ],
            "docker import of the pause image",
            log,
            env=docker.env(),
        )
    return PAUSE_IMAGE


def load_into_containerd(
    docker: Docker, refs: list[str], ctr_address: str, log: Path, timeout: float = 600
) -> None:
    """Move images from docker into containerd's ``k8s.io`` namespace."""
    with tempfile.TemporaryDirectory(dir=images_cache()) as tmp:
        tar = Path(tmp) / "images.tar"
        docker.docker("save", "-o", str(tar), *refs, what="docker save", timeout=timeout, log=log)
        _run(
            ["ctr", "--address", ctr_address, "-n", "k8s.io", "images", "import", str(tar)],
            "ctr images import",
            log,
            timeout=timeout,
        )
