"""Twelve molecules at the default cap of 3: a watch never sees more than 3 runner pods."""

from __future__ import annotations

import json
import subprocess
import threading
from typing import Any

from tests.molecules import WATER, alkane

from .conftest import NAMESPACE, RUNNER_SELECTOR, Release


class PodWatch:
    """`kubectl get pods --watch`: the largest number of unfinished runner pods seen."""

    def __init__(self, release: Release) -> None:
        self.active: dict[str, str] = {}
        self.max_active = 0
        self.seen: set[str] = set()
        self.proc = subprocess.Popen(
            [
                str(release.kube.tools["kubectl"]),
                "-n",
                NAMESPACE,
                "get",
                "pods",
                "-l",
                RUNNER_SELECTOR,
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=release.kube.env(),
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _event(self, ev: dict[str, Any]) -> None:
        pod = ev.get("object", {})
        name = pod.get("metadata", {}).get("name", "")
        phase = pod.get("status", {}).get("phase", "")
        self.seen.add(name)
        if ev.get("type") == "DELETED" or phase in ("Succeeded", "Failed"):
            self.active.pop(name, None)
        else:
            self.active[name] = phase
        self.max_active = max(self.max_active, len(self.active))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        decoder = json.JSONDecoder()
        buf = ""
        for line in self.proc.stdout:
            buf += line
            while buf.strip():
                try:
                    obj, end = decoder.raw_decode(buf.lstrip())
                except ValueError:
                    break
                buf = buf.lstrip()[end:]
                self._event(obj)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def test_twelve_molecules_never_more_than_three_pods(release: Release) -> None:
    watch = PodWatch(release)
    try:
        molecules = [WATER if i % 2 else alkane(2 + i % 5) for i in range(12)]
        ids = [
            release.submit(xyz, "--name", f"batch-{i}", "--task", "opt")
            for i, xyz in enumerate(molecules)
        ]
        records = [release.wait_terminal(job_id, timeout=600) for job_id in ids]
    finally:
        watch.stop()
    assert [r["status"] for r in records] == ["COMPLETED"] * 12, [
        (r["job_id"], r.get("error")) for r in records
    ]
    assert 0 < watch.max_active <= 3, watch.max_active
    for job_id in ids:
        jobs = release.runner_jobs(job_id)
        assert len(jobs) == 1, (job_id, [j["metadata"]["name"] for j in jobs])
        assert release.metadata(job_id)["attempts"] == 1
    assert len([n for n in watch.seen if n]) >= 12
