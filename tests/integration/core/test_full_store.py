"""A full or read-only job store (issue 12, point 5), on a real small file system: a
tmpfs of a few MB mounted for the test (root only), filled up with a filler file.

- `qforge submit` fails with one line on stderr, exit 2, and leaves nothing behind
  (no folder without its marker, no marker without its folder, staging empty), however
  much room was left when it started: a submission is all or nothing;
- the local worker, with real xtb, survives ENOSPC and EROFS while claiming, writing
  results and records, says so in its log, and once the store is writable again runs
  every job to COMPLETED: nothing lost, nothing left RUNNING.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qforge.store.jobstore import JobStore
from qforge_runner.molecule import Molecule, parse_molecule
from qforge_runner.spec import JobSpec
from tests.molecules import CAFFEINE, WATER_EXPERIMENTAL
from tests.waiting import wait_until

from .conftest import qforge

Start = Callable[..., subprocess.Popen[str]]

PAGE = 4096
SIZE = "4m"


class SmallFs:
    def __init__(self, mount: Path) -> None:
        self.mount = mount
        self.filler = mount / "filler"

    def fill(self, leave_pages: int = 0) -> None:
        """Take all the room but `leave_pages` pages."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * PAGE):
                    pass
        finally:
            os.close(fd)
        size = self.filler.stat().st_size
        os.truncate(self.filler, max(0, size - leave_pages * PAGE))

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self, on: bool) -> None:
        subprocess.run(["mount", "-o", f"remount,{'ro' if on else 'rw'}", str(self.mount)],
                       check=True, timeout=30)


@pytest.fixture
def small_fs() -> Iterator[SmallFs]:
    if os.geteuid() != 0 or shutil.which("mount") is None:  # pragma: no cover
        pytest.skip("mounting a tmpfs needs root")
    mount = Path(tempfile.mkdtemp(prefix="qforge-smallfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0755", "tmpfs",
                    str(mount)], check=True, timeout=30)
    try:
        yield SmallFs(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)
        mount.rmdir()


@pytest.fixture
def jobs(small_fs: SmallFs) -> Path:
    """The store of start_worker's workers: on the small file system."""
    return small_fs.mount / "jobs"


def _store_files(root: Path) -> list[str]:
    """Every file and folder of the store, index folders included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _consistent(store: JobStore) -> None:
    """All or nothing: every job folder has a valid record and its marker, every queue
    marker its folder; nothing staged."""
    folders = set(store.job_ids())
    markers = {k.job_id for k in store.queue.queued()}
    assert folders == markers, (folders, markers)
    for job_id in folders:
        assert store.read(job_id).status.value == "QUEUED"
        assert (store.layout.job_dir(job_id) / "input.xyz").is_file()
    assert os.listdir(store.layout.incoming) == []


@pytest.mark.parametrize("leave_pages", [0, 1, 2, 3])
def test_submit_to_a_full_store_is_all_or_nothing(small_fs: SmallFs, tmp_path: Path,
                                                  leave_pages: int) -> None:
    jobs = small_fs.mount / "jobs"
    JobStore(jobs).ensure()
    xyz = tmp_path / "water.xyz"
    xyz.write_text(WATER_EXPERIMENTAL)
    small_fs.fill(leave_pages)
    out = qforge("submit", str(xyz), jobs=jobs)
    store = JobStore(jobs)
    if out.returncode == 0:  # there was room enough for one more job: all of it
        assert len(store.job_ids()) == 1
    else:
        assert out.returncode == 2, out.stderr
        lines = out.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        assert "No space left on device" in lines[0] and "nothing was written" in lines[0]
        assert store.job_ids() == []
    _consistent(store)
    if leave_pages == 0:
        assert out.returncode == 2
    small_fs.free()
    again = qforge("submit", str(xyz), jobs=jobs)
    assert again.returncode == 0, again.stderr  # room again: it just works
    _consistent(store)


def test_submit_and_cancel_on_a_read_only_store(small_fs: SmallFs, tmp_path: Path) -> None:
    jobs = small_fs.mount / "jobs"
    xyz = tmp_path / "water.xyz"
    xyz.write_text(WATER_EXPERIMENTAL)
    first = qforge("submit", str(xyz), "--json", jobs=jobs)
    job_id = json.loads(first.stdout)["job_id"]
    before = _store_files(jobs)
    small_fs.read_only(True)
    try:
        # --force: a duplicate of a queued job is otherwise answered without a write
        for args in (("submit", str(xyz), "--force"), ("cancel", job_id)):
            out = qforge(*args, jobs=jobs)
            assert out.returncode == 2, (args, out.stderr)
            (line,) = out.stderr.splitlines()
            assert "Read-only file system" in line and "Traceback" not in line
        assert qforge("show", job_id, jobs=jobs).returncode == 0  # reading still works
    finally:
        small_fs.read_only(False)
    assert _store_files(jobs) == before


def _nudged(text: str, i: int) -> Molecule:
    mol = parse_molecule(text)
    (x, y, z), *rest = mol.geometry
    return Molecule(symbols=mol.symbols, comment=mol.comment,
                    geometry=((x + 1e-4 * i, y, z), *rest))


def _status(jobs: Path, job_id: str) -> str:
    try:
        return str(json.loads((jobs / job_id / "metadata.json").read_text())["status"])
    except (OSError, ValueError):
        return "?"


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_worker_survives_a_full_or_read_only_store_and_carries_on(
        small_fs: SmallFs, jobs: Path, tmp_path: Path, start_worker: Start, fault: str
) -> None:
    store = JobStore(jobs)
    # caffeine hessians (a second or two of xtb each): the fault lands while they run
    ids = [store.submit(JobSpec(molecule=(m := _nudged(CAFFEINE, i)), task="hess",
                                name=f"caf{i}"), input_text=m.to_xyz()).job_id
           for i in range(4)]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    log = tmp_path / "worker.log"
    worker = start_worker("--poll-interval", "0.3", "--max-concurrent", "2",
                          env={"TMPDIR": str(scratch), "LEASE_SECONDS": "5"})
    wait_until(lambda: any(_status(jobs, j) == "RUNNING" for j in ids), 60, "a job RUNNING")
    if fault == "full":
        small_fs.fill(0)
    else:
        small_fs.read_only(True)
    try:
        wait_until(lambda: "Job store error" in log.read_text(), 60,
                   "the worker to report the store error")
        # it keeps going: further passes fail, the process stays
        wait_until(lambda: log.read_text().count("Job store error") >= 3, 60,
                   "three failed passes")
        assert worker.poll() is None, log.read_text()[-3000:]
    finally:
        if fault == "full":
            small_fs.free()
        else:
            small_fs.read_only(False)
    wait_until(lambda: all(_status(jobs, j) == "COMPLETED" for j in ids), 180,
               "every job COMPLETED once the store is writable")
    text = log.read_text()
    reason = "No space left on device" if fault == "full" else "Read-only file system"
    assert reason in text
    assert "Traceback" not in text, text[-3000:]
    for job_id in ids:
        assert store.read(job_id).result is not None
    wait_until(lambda: os.listdir(store.layout.running) == [], 10, "no claim left")
    assert store.queue.queued() == []
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
