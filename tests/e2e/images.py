"""The e2e suite's own dockerd (a Docker of tests.kube with other paths).

tests.kube's ``Docker`` shares one dockerd per machine under /run/qforge-docker. The e2e
suite builds its images with a dockerd of its own (own socket, exec root, data root), so
a build never depends on, nor disturbs, a dockerd another suite started or stops.

Run as ``python -m tests.e2e.images`` to build both images ahead of a run (warms the cache).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.kube.images import Docker, ensure_base_image
from tests.kube.tools import cache_root

REPO = Path(__file__).resolve().parents[2]


class E2EDocker(Docker):
    def __init__(self, run_dir: Path | None = None) -> None:
        super().__init__(run_dir)
        self.state = Path("/run/qforge-e2e-docker")
        self.data_root = cache_root() / "docker-e2e"
        self.socket = self.state / "docker.sock"
        self.host = f"unix://{self.socket}"
        if run_dir is None:
            self.log_dir = self.state / "logs"
            self.supervisor.log_dir = self.log_dir


SITE_CA_DIR = Path("/usr/local/share/ca-certificates")
SITE_CA_LABEL = "org.qforge.e2e.site-ca"


def add_site_ca(docker: Docker, tags: list[str], log: Path) -> None:
    """Give the Debian base this machine's own CAs (e.g. a TLS-inspecting proxy's).

    Dockerfile.* trust a CA the base image carries in /usr/local/share/ca-certificates
    (installing ca-certificates adds it to the bundle pip uses). Only this dockerd's
    base tags change; the Dockerfiles stay as they are everywhere else.
    """
    certs = sorted(SITE_CA_DIR.glob("*.crt"))
    if not certs:
        return
    labels = docker.docker("image", "inspect", "--format", "{{json .Config.Labels}}", tags[0])
    if SITE_CA_LABEL in labels:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for cert in certs:
            shutil.copy(cert, Path(tmp) / cert.name)
        (Path(tmp) / "Dockerfile").write_text(
            f"FROM {tags[0]}\nCOPY *.crt {SITE_CA_DIR}/\nLABEL {SITE_CA_LABEL}=1\n"
        )
        docker.build(Path(tmp), tags[0], log=log)
    for tag in tags[1:]:
        docker.docker("tag", tags[0], tag)


def build_images(docker: Docker, runner: str, controller: str, log: Path) -> dict[str, float]:
    """Build both images from the repo's Dockerfiles; returns seconds per image."""
    add_site_ca(docker, ensure_base_image(docker, log), log)
    took = {}
    for tag, dockerfile in ((runner, "Dockerfile.runner"), (controller, "Dockerfile.controller")):
        t0 = time.monotonic()
        docker.build(REPO, tag, REPO / dockerfile, log=log)
        took[tag] = time.monotonic() - t0
    return took


def image_size(docker: Docker, ref: str) -> int:
    return int(docker.docker("image", "inspect", "--format", "{{.Size}}", ref).strip())


if __name__ == "__main__":
    from .conftest import images

    d = E2EDocker()
    d.start()
    started = d.daemon is not None
    try:
        runner, controller = images()
        log = d.log_dir / "images.log"
        for tag, secs in build_images(d, runner, controller, log).items():
            print(
                f"{tag}: built in {secs:.0f}s, {image_size(d, tag) / 1e6:.0f} MB", file=sys.stderr
            )
    finally:
        if started:
            d.stop()
