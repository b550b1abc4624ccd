"""xtb's files are moved from the scratch folder into the job folder; in a runner pod
the two are one file system under different mounts (the store's PVC with a subPath, an
emptyDir on the same node disk): st_dev is equal, yet rename answers EXDEV. A bind mount
reproduces that here (root is needed to mount; make runs the tests as root)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from qforge_runner.atomic import write_files_atomic


@pytest.fixture
def bind_mounted_job(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    scratch, real, job = tmp_path / "scratch", tmp_path / "store" / "job1", tmp_path / "job"
    for d in (scratch, real, job):
        d.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(real), str(job)], check=True, timeout=30)
    try:
        yield scratch, job
    finally:
        subprocess.run(["umount", str(job)], check=True, timeout=30)


def test_a_move_between_two_mounts_of_one_file_system_copies_it_into_place(
        bind_mounted_job: tuple[Path, Path]) -> None:
    scratch, job = bind_mounted_job
    assert os.stat(scratch).st_dev == os.stat(job).st_dev  # what fooled the device check
    (scratch / "xtbout.json").write_text('{"total energy": -5.07}\n')
    write_files_atomic([(job / "xtbout.json", scratch / "xtbout.json"),
                        (job / "result.json", b"{}\n")], move=True)
    assert (job / "xtbout.json").read_text() == '{"total energy": -5.07}\n'
    assert (job / "result.json").read_bytes() == b"{}\n"
    assert sorted(p.name for p in job.iterdir()) == ["result.json", "xtbout.json"]
