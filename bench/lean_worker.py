"""The leanest Python worker: a ceiling for benchmark e, not a part of qforge.

bench_pipeline.py starts this script as a new process beside `qforge worker` and
`xargs -P 2`, on a folder it prepared (queue/, running/, jobs/<id>/{record.json,
input.xyz}, scratch/). It does only the store operations no durable worker can skip,
arranged as qforge arranges them so that no slot waits for the disk:
  claim      rename the queue marker into running/ (all of them first);
  RUNNING    read and validate the record; its durable rewrite (temporary file, fsync,
             rename, fsync of the folder) goes to the writer thread;
  run        a scratch folder holding input.xyz, xtb with the given flags in the
             environment this process was started with, its output to xtb.log; the
             slot takes the next job the moment xtb exits;
  results    (writer thread, in order) xtbout.json's energy read, xtbopt.xyz written
             durably into the job folder, the scratch folder removed, the COMPLETED
             record written durably, the running marker removed.
No logging, no heartbeat, no index, no cancel, timeout or recovery, no checks.

`pydantic` validates and writes the records through one small frozen pydantic model, as
the project's rule for everything that crosses a file asks; `plain` uses json and dicts
only (started with `python -I -S`, it then imports nothing outside the standard
library). Standard library only at module level, and no more of it than the work needs
(no argparse, no concurrent.futures: they cost milliseconds at start), so that the plain
variant pays for little more than the interpreter.

Usage: lean_worker.py ROOT XTB pydantic|plain THREADS
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

Codec = tuple[Callable[[bytes], Any], Callable[[Any, dict[str, Any]], Any],
              Callable[[Any], bytes], Callable[[Any], list[str]]]


def durable_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    folder = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def plain_codec() -> Codec:
    def update(rec: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        return {**rec, **changes}

    return (json.loads, update, lambda rec: json.dumps(rec).encode(),
            lambda rec: list(rec["args"]))


def pydantic_codec() -> Codec:
    from pydantic import BaseModel, ConfigDict

    class Record(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        job_id: str
        status: str
        args: list[str]
        energy: float | None = None
        updated: float

    def update(rec: Record, changes: dict[str, Any]) -> Record:
        return rec.model_copy(update=changes)

    return (Record.model_validate_json, update, lambda rec: rec.model_dump_json().encode(),
            lambda rec: list(rec.args))


class Worker:
    def __init__(self, root: str, xtb: str, codec: Codec) -> None:
        self.root, self.xtb, self.codec = root, xtb, codec
        self.writes: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.failed: list[str] = []

    def job_dir(self, job: str) -> str:
        return os.path.join(self.root, "jobs", job)

    def calculate(self, job: str) -> None:
        """A slot's part: claim's record, xtb; the writes go to the writer."""
        load, update, dump, args_of = self.codec
        record_path = os.path.join(self.job_dir(job), "record.json")
        with open(record_path, "rb") as fh:
            record = update(load(fh.read()), {"status": "RUNNING", "updated": time.time()})
        self.writes.put(lambda: durable_write(record_path, dump(record)))
        scratch = os.path.join(self.root, "scratch", job)
        os.mkdir(scratch)
        shutil.copyfile(os.path.join(self.job_dir(job), "input.xyz"),
                        os.path.join(scratch, "input.xyz"))
        with open(os.path.join(scratch, "xtb.log"), "wb") as out:
            subprocess.run([self.xtb, "input.xyz", *args_of(record)], cwd=scratch,
                           stdout=out, stderr=subprocess.STDOUT, check=True)
        self.writes.put(lambda: self.save(job, record, scratch))

    def save(self, job: str, record: Any, scratch: str) -> None:
        _, update, dump, _ = self.codec
        with open(os.path.join(scratch, "xtbout.json"), "rb") as fh:
            energy = float(json.loads(fh.read())["total energy"])
        with open(os.path.join(scratch, "xtbopt.xyz"), "rb") as fh:
            durable_write(os.path.join(self.job_dir(job), "xtbopt.xyz"), fh.read())
        shutil.rmtree(scratch)
        done = update(record, {"status": "COMPLETED", "energy": energy, "updated": time.time()})
        durable_write(os.path.join(self.job_dir(job), "record.json"), dump(done))
        os.unlink(os.path.join(self.root, "running", job))

    def write_loop(self) -> None:
        while (write := self.writes.get()) is not None:
            try:
                write()
            except Exception as exc:  # reported by the benchmark as a job not COMPLETED
                self.failed.append(f"a write: {exc}")


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[2] not in ("pydantic", "plain"):
        print(__doc__.rsplit("Usage: ", 1)[1].strip(), file=sys.stderr)
        return 2
    root, xtb, records, threads = argv[0], argv[1], argv[2], int(argv[3])
    worker = Worker(root, xtb, pydantic_codec() if records == "pydantic" else plain_codec())
    queued, running = os.path.join(root, "queue"), os.path.join(root, "running")
    jobs = sorted(os.listdir(queued))
    for job in jobs:
        os.rename(os.path.join(queued, job), os.path.join(running, job))
    lock = threading.Lock()

    def slot() -> None:
        while True:
            with lock:
                if not jobs:
                    return
                job = jobs.pop(0)
            try:
                worker.calculate(job)
            except Exception as exc:  # an xtb failure is the benchmark's to report
                worker.failed.append(f"{job}: {exc}")

    writer = threading.Thread(target=worker.write_loop)
    writer.start()
    slots = [threading.Thread(target=slot) for _ in range(threads)]
    for thread in slots:
        thread.start()
    for thread in slots:
        thread.join()
    worker.writes.put(None)
    writer.join()
    for line in worker.failed:
        print(line, file=sys.stderr)
    return 1 if worker.failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
