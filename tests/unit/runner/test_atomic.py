"""Atomic writes: whole files only, no temp files left, readable by others."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from qforge_runner import atomic
from qforge_runner.atomic import write_files_atomic, write_json_atomic, write_text_atomic


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_write_json_and_text(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    write_json_atomic(target, {"energy": -5.07, "name": "wäter"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"energy": -5.07, "name": "wäter"}
    assert target.read_text(encoding="utf-8").endswith("}\n")
    write_text_atomic(target, "replaced\n")
    assert target.read_text() == "replaced\n"
    assert _leftovers(tmp_path) == []


def test_files_are_readable_by_others(tmp_path: Path) -> None:
    target = tmp_path / "metadata.json"
    write_text_atomic(target, "{}\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_private_file_is_published_with_its_mode(tmp_path: Path) -> None:
    """mode=0o600 (the token store's records), also when it replaces a file readable by
    others, and when it is moved into place."""
    target = tmp_path / "alice.json"
    write_text_atomic(target, "{}\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    atomic.write_bytes_atomic(target, b"secret-ish\n", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes() == b"secret-ish\n"
    src = tmp_path / "src.bin"
    src.write_bytes(b"moved\n")
    os.chmod(src, 0o644)
    write_files_atomic([(tmp_path / "moved.bin", src)], move=True, mode=0o600)
    assert stat.S_IMODE((tmp_path / "moved.bin").stat().st_mode) == 0o600
    assert _leftovers(tmp_path) == []


def test_copy_a_file_atomically(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 100)
    write_files_atomic([(tmp_path / "dst.bin", src)])
    assert (tmp_path / "dst.bin").read_bytes() == src.read_bytes()
    assert _leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "result.json"
    write_json_atomic(target, {"version": 1})

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_json_atomic(target, {"version": 2})
    assert json.loads(target.read_text()) == {"version": 1}
    assert _leftovers(tmp_path) == []


def test_unserialisable_data_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "x.json", {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_a_concurrent_reader_never_sees_half_a_file(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    versions = [{"writer": i, "payload": str(i) * 20_000} for i in range(2)]
    write_json_atomic(target, versions[0])
    done = threading.Event()
    seen: list[int] = []
    bad: list[str] = []

    def reader() -> None:
        while not done.is_set():
            text = target.read_text()
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                bad.append(f"partial read of {len(text)} characters")
                return
            if data != versions[data["writer"]]:
                bad.append("mixed content")
                return
            seen.append(data["writer"])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(100):
            write_json_atomic(target, versions[i % 2])
    finally:
        done.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert bad == []
    assert seen  # the reader did read while the writer wrote
    assert _leftovers(tmp_path) == []


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_fsync_dir_syncs_the_folder_itself_and_closes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    before = _open_fds()
    atomic.fsync_dir(tmp_path)
    assert synced == [tmp_path.stat().st_ino]
    assert _open_fds() == before


def test_fsync_dir_skips_folders_it_cannot_open_or_sync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []

    def refusing_fsync(fd: int) -> None:
        synced.append(fd)
        raise OSError(22, "Invalid argument")  # file systems that refuse it on folders

    monkeypatch.setattr(os, "fsync", refusing_fsync)
    before = _open_fds()
    atomic.fsync_dir(tmp_path / "missing")  # cannot be opened: nothing to sync
    assert synced == []
    atomic.fsync_dir(tmp_path)  # refused: no exception, and the folder is closed again
    assert len(synced) == 1
    assert _open_fds() == before


def test_write_several_files_in_one_round(tmp_path: Path) -> None:
    src = tmp_path / "src"
    dst = tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    pairs = []
    for i in range(5):
        (src / f"f{i}").write_text(f"content {i}\n" * 1000)
        pairs.append((dst / f"f{i}", src / f"f{i}"))
    (dst / "f0").write_text("old\n")
    write_files_atomic([*pairs, (dst / "result.json", b"{}\n")])
    for d, s in pairs:
        assert d.read_text() == s.read_text()
        assert stat.S_IMODE(d.stat().st_mode) == 0o644
    assert (dst / "result.json").read_bytes() == b"{}\n"
    assert _leftovers(dst) == []
    write_files_atomic([])  # nothing to do


def test_a_failed_batch_copy_leaves_no_temp_files(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a\n")
    with pytest.raises(FileNotFoundError):
        write_files_atomic([(tmp_path / "a2", tmp_path / "a"),
                            (tmp_path / "b2", tmp_path / "missing")])
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "a2").exists()


def test_a_move_renames_a_file_of_the_same_file_system_into_place(tmp_path: Path) -> None:
    """move=True: xtb's files are not copied but renamed (their data written once)."""
    scratch, job = tmp_path / "scratch", tmp_path / "job"
    scratch.mkdir()
    job.mkdir()
    (scratch / "xtb.log").write_text("TOTAL ENERGY -5.07\n" * 500)
    os.chmod(scratch / "xtb.log", 0o600)
    inode = (scratch / "xtb.log").stat().st_ino
    (job / "xtb.log").write_text("an earlier attempt's\n")
    write_files_atomic([(job / "xtb.log", scratch / "xtb.log"),
                        (job / "result.json", b"{}\n")], move=True)
    assert (job / "xtb.log").read_text() == "TOTAL ENERGY -5.07\n" * 500
    assert (job / "xtb.log").stat().st_ino == inode  # the same file: no copy
    assert stat.S_IMODE((job / "xtb.log").stat().st_mode) == 0o644
    assert not (scratch / "xtb.log").exists()
    assert (job / "result.json").read_bytes() == b"{}\n"
    assert _leftovers(job) == []


def test_a_move_across_file_systems_copies(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    scratch, job = tmp_path / "scratch", tmp_path / "job"
    scratch.mkdir()
    job.mkdir()
    (scratch / "charges").write_text("0.1\n-0.1\n")
    monkeypatch.setattr(atomic, "_device", lambda folder, known: hash(str(folder)))
    write_files_atomic([(job / "charges", scratch / "charges")], move=True)
    assert (job / "charges").read_text() == "0.1\n-0.1\n"
    assert (scratch / "charges").exists()  # copied; the scratch folder is removed later
    assert _leftovers(job) == []


def test_a_failed_move_publishes_nothing_and_keeps_the_sources(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch, job = tmp_path / "scratch", tmp_path / "job"
    scratch.mkdir()
    job.mkdir()
    (scratch / "xtbopt.xyz").write_text("3\n\n")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        write_files_atomic([(job / "xtbopt.xyz", scratch / "xtbopt.xyz"),
                            (job / "result.json", b"{}\n")], move=True)
    assert (scratch / "xtbopt.xyz").read_text() == "3\n\n"
    assert list(job.iterdir()) == []
