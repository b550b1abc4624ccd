"""A water molecule through the whole product: kubectl exec → controller → Job → xtb."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from tests.molecules import UNKNOWN_ELEMENT as INVALID
from tests.molecules import WATER
from tests.waiting import wait_until

from .conftest import NAMESPACE, RUNNER_SELECTOR, Release


def _direct_xtb_energy(tmp_path: Path, release: Release) -> float:
    """The same input through xtb directly: here when xtb is installed, else in a pod."""
    xtb = shutil.which("xtb")
    args = ["--gfn", "2", "--opt", "normal", "--chrg", "0", "--uhf", "0", "--json"]
    if xtb:
        (tmp_path / "water.xyz").write_text(WATER)
        subprocess.run(
            [xtb, "water.xyz", *args],
            cwd=tmp_path,
            capture_output=True,
            check=True,
            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
            timeout=120,
        )
        return float(json.loads((tmp_path / "xtbout.json").read_text())["total energy"])
    pod = "direct-xtb"
    script = (
        "cd /scratch && printf '%s' \"$XYZ\" > water.xyz && "
        f"xtb water.xyz {' '.join(args)} >/dev/null 2>&1 && cat xtbout.json"
    )
    spec = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod, "namespace": NAMESPACE},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "xtb",
                    "image": release.runner_image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", script],
                    "env": [
                        {"name": "XYZ", "value": WATER},
                        {"name": "OMP_NUM_THREADS", "value": "1"},
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                }
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }
    release.kube.apply(spec)
    try:
        wait_until(
            lambda: release.kj("get", "pod", pod)["status"].get("phase") == "Succeeded",
            180,
            "direct xtb pod",
            interval=1.0,
        )
        return float(json.loads(release.k("logs", pod).stdout)["total energy"])
    finally:
        release.k("delete", "pod", pod, "--wait=false", check=False)


def test_water_completes_with_the_energy_of_a_direct_xtb_run(
    release: Release, tmp_path: Path
) -> None:
    job_id = release.submit(WATER, "--name", "water")
    record = release.wait_terminal(job_id, timeout=300)
    assert record["status"] == "COMPLETED", record
    energy = record["result"]["energy"]
    reference = _direct_xtb_energy(tmp_path, release)
    assert abs(energy - reference) < 1e-6, (energy, reference)
    assert abs(energy - -5.0705444) < 1e-4
    # the record says where it ran: this Job, its pod, the node
    meta = release.metadata(job_id)
    assert meta["status"] == "COMPLETED"
    placement = meta["placement"]
    assert placement["executor"] == "kubernetes"
    assert placement["k8s_job"] and placement["pod"] and placement["node"]
    jobs = release.runner_jobs(job_id)
    assert [j["metadata"]["name"] for j in jobs] == [placement["k8s_job"]]


def test_kubectl_inspection_as_documented(release: Release) -> None:
    job_id = release.submit(WATER, "--name", "inspect", "--task", "sp")
    record = release.wait_terminal(job_id, timeout=300)
    assert record["status"] == "COMPLETED", record
    # kubectl get jobs -l app.kubernetes.io/name=qforge lists the calculation
    listing = release.k(
        "get",
        "jobs",
        "-l",
        "app.kubernetes.io/name=qforge",
        "-L",
        "qforge.io/job-id",
    ).stdout
    job_name = release.runner_jobs(job_id)[0]["metadata"]["name"]
    assert job_name in listing

    # kubectl describe job shows qforge's Event: Completed with the energy (with
    # kubeApi.successEvents, as the e2e release sets it; a "Launched" Event only with
    # kubeApi.launchEvents: each would cost one more API write per job)
    def events() -> str | None:
        text = release.k("describe", "job", job_name).stdout
        return text if f"job {job_id} completed, total energy" in text else None

    described = wait_until(events, 60, "qforge's Completed Event on the Job", interval=2)
    assert re.search(r"Normal\s+Completed", described), described
    # kubectl logs job/<name> shows the runner's log
    logs = release.k("logs", f"job/{job_name}").stdout
    assert logs.strip(), "the runner pod logged nothing"
    assert "xtb" in logs.lower() or job_id in logs, logs


def test_invalid_molecule_is_rejected_at_submit_with_the_message(release: Release) -> None:
    before = release.qforge("list", "--json").stdout
    proc = release.qforge("submit", "-", input=INVALID, check=False)
    assert proc.returncode == 2, proc
    assert "line 4: unknown element 'Xq'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert release.qforge("list", "--json").stdout == before  # nothing written


def test_runner_pods_are_non_root_read_only_and_see_only_their_own_job(release: Release) -> None:
    # A calculation that outlives the look inside its pod (C30 ohess runs for minutes;
    # C10, ~17 s, could end between two `kubectl exec` calls): cancelled afterwards.
    from tests.molecules import alkane

    other = release.submit(WATER, "--name", "neighbour", "--task", "sp")
    release.wait_terminal(other, timeout=300)
    job_id = release.submit(alkane(30), "--name", "looked-at", "--task", "ohess")

    def running_pod() -> str | None:
        pods = release.kj("get", "pods", "-l", f"{RUNNER_SELECTOR},qforge.io/job-id={job_id}")[
            "items"
        ]
        for p in pods:
            if p["status"].get("phase") == "Running":
                return str(p["metadata"]["name"])
        return None

    pod = wait_until(running_pod, 180, "the runner pod running", interval=1.0)

    def sh(script: str) -> subprocess.CompletedProcess[str]:
        return release.k("exec", pod, "-c", "runner", "--", "sh", "-c", script, check=False)

    assert sh("id -u").stdout.strip() == "10001"
    assert sh("id -g").stdout.strip() == "10001"
    ro = sh("touch /usr/should-fail")
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr, ro
    assert sh("grep -E '^[0-9]+ [0-9]+ [^ ]+ / / ro' /proc/self/mountinfo").returncode == 0
    # /job is this job's own folder of the store: its input, no other job's folder
    listing = sh("ls -a /job").stdout.split()
    assert "input.xyz" in listing and "metadata.json" in listing, listing
    assert other not in listing and job_id not in listing
    assert sh(f"ls /job/../{other}").returncode != 0
    assert sh("test -w /job && test -w /scratch").returncode == 0
    # capabilities: none
    caps = sh("grep CapEff /proc/self/status").stdout
    assert caps.split()[-1] == "0000000000000000", caps
    spec = release.kj("get", "pod", pod)["spec"]
    assert spec.get("automountServiceAccountToken") is False
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == "/job")
    assert mount["subPath"].endswith(job_id)
    release.qforge("cancel", job_id)
    assert release.wait_terminal(job_id, timeout=120)["status"] == "CANCELLED"


def test_namespace_enforces_pod_security_restricted(release: Release) -> None:
    labels = release.kube.kubectl_json("get", "namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # a privileged pod is refused in this namespace
    proc = release.k(
        "run",
        "priv",
        "--image",
        release.runner_image,
        "--restart=Never",
        "--overrides",
        json.dumps(
            {
                "spec": {
                    "containers": [
                        {
                            "name": "priv",
                            "image": release.runner_image,
                            "securityContext": {"privileged": True},
                        }
                    ]
                }
            }
        ),
        check=False,
    )
    assert proc.returncode != 0 and "restricted" in proc.stderr, proc
