"""The Helm chart, rendered and linted by the real helm.

helm is found through $HELM, then PATH, then the project's build cache
(${QFORGE_CACHE:-/var/cache/qforge}/k8s/helm-*/bin/helm). The tests skip only when no
helm binary exists at all. Installing the chart into a real API server (and RBAC checks
with `kubectl auth can-i`) are the cluster tests' part.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from qforge.k8s.manifests import build_job_manifest
from qforge.settings import Settings
from qforge_runner.spec import JobSpec
from tests.molecules import WATER_EXPERIMENTAL as WATER

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "qforge"
NAMESPACE = "qforge-test"
RELEASE = "qforge"
FULLNAME = "qforge"  # the release name contains the chart name
HELM_TIMEOUT = 120


def _kube_version() -> str:
    """Render for the Kubernetes version the cluster tests run (tools/k8s/versions.env)."""
    pins = ROOT / "tools" / "k8s" / "versions.env"
    if pins.exists():
        for line in pins.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "KUBERNETES_VERSION" and value.strip():
                return value.strip()
    return "v1.34.0"


KUBE_VERSION = _kube_version()

Manifest = dict[str, Any]


def _find_helm() -> str | None:
    candidates = [os.environ.get("HELM"), shutil.which("helm")]
    cache = os.environ.get("QFORGE_CACHE", "/var/cache/qforge")
    candidates += sorted(glob.glob(f"{cache}/k8s/helm-*/bin/helm"), reverse=True)
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def helm() -> str:
    found = _find_helm()
    if found is None:
        pytest.skip("helm is not installed (set HELM, or build it with `make helm`)")
    return found


def _run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, *args],
        capture_output=True,
        text=True,
        timeout=HELM_TIMEOUT,
        check=False,
        env={
            **os.environ,
            "HELM_CACHE_HOME": "/tmp/qforge-helm/cache",
            "HELM_CONFIG_HOME": "/tmp/qforge-helm/config",
            "HELM_DATA_HOME": "/tmp/qforge-helm/data",
        },
    )


def _template(
    helm: str, *args: str, values: dict[str, Any] | None = None, tmp: Path | None = None
) -> subprocess.CompletedProcess[str]:
    extra: list[str] = []
    if values is not None:
        assert tmp is not None
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        extra = ["-f", str(path)]
    return _run(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        *extra,
        *args,
    )


def render(
    helm: str, *args: str, values: dict[str, Any] | None = None, tmp: Path | None = None
) -> list[Manifest]:
    result = _template(helm, *args, values=values, tmp=tmp)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(docs: list[Manifest], kind: str, *, hook: bool = False,
        component: str | None = None) -> Manifest:
    """The one object of `kind` (of the app.kubernetes.io/component `component`, when
    given: "controller" or "server")."""
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and ("helm.sh/hook" in (d["metadata"].get("annotations") or {})) is hook
        and (component is None
             or d["metadata"]["labels"].get("app.kubernetes.io/component") == component)
    ]
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def kinds(docs: list[Manifest]) -> list[str]:
    return sorted(d["kind"] for d in docs)


@pytest.fixture(scope="module")
def default_docs(helm: str) -> list[Manifest]:
    return render(helm)


def assert_restricted(pod_spec: Manifest) -> None:
    """The Pod Security "restricted" rules, field by field."""
    psc = pod_spec.get("securityContext") or {}
    assert pod_spec.get("hostNetwork") is not True
    assert pod_spec.get("hostPID") is not True
    assert pod_spec.get("hostIPC") is not True
    for volume in pod_spec.get("volumes", []):
        allowed = {
            "persistentVolumeClaim",
            "emptyDir",
            "configMap",
            "secret",
            "projected",
            "downwardAPI",
            "csi",
            "ephemeral",
        }
        assert set(volume) - {"name"} <= allowed, volume
    containers = pod_spec["containers"] + pod_spec.get("initContainers", [])
    for c in containers:
        sc = c.get("securityContext") or {}
        assert sc.get("privileged") is not True
        assert sc.get("allowPrivilegeEscalation") is False, c["name"]
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], c["name"]
        assert not set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        assert non_root is True, c["name"]
        assert sc.get("runAsUser", psc.get("runAsUser")) != 0
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile")) or {}
        assert seccomp.get("type") in {"RuntimeDefault", "Localhost"}, c["name"]
        assert "ports" not in c or all("hostPort" not in p for p in c["ports"])
        # qforge's own stricter rule: the root filesystem is read-only.
        assert sc.get("readOnlyRootFilesystem") is True, c["name"]


# --- lint and default rendering ----------------------------------------------------


def test_helm_lint_passes_strict(helm: str) -> None:
    result = _run(
        helm,
        "lint",
        "--strict",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_defaults_render_every_object(default_docs: list[Manifest]) -> None:
    assert kinds(default_docs) == sorted(
        [
            "ConfigMap",
            "Deployment",
            "PersistentVolumeClaim",
            "Pod",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            # the server (test_server_chart.py): Deployment, Service and metrics Service,
            # ServiceAccount, admin token, disruption budget
            "Deployment",
            "Service",
            "Service",
            "ServiceAccount",
            "Secret",
            "PodDisruptionBudget",
        ]
    )
    for doc in default_docs:
        assert doc["metadata"]["namespace"] == NAMESPACE
        assert len(doc["metadata"]["name"]) <= 63
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_controller_deployment(default_docs: list[Manifest]) -> None:
    deploy = one(default_docs, "Deployment", component="controller")
    spec = deploy["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert spec["selector"]["matchLabels"]["app.kubernetes.io/component"] == "controller"
    assert pod["serviceAccountName"] == FULLNAME
    assert_restricted(pod)
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    (container,) = pod["containers"]
    assert container["image"] == "qforge-controller:0.1.0"
    assert container["args"][0] == "--liveness=http://0.0.0.0:8080/healthz"
    probe = container["livenessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert probe["failureThreshold"] >= 1 and probe["periodSeconds"] >= 1
    assert container["envFrom"] == [{"configMapRef": {"name": FULLNAME}}]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/jobs": "jobs", "/tmp": "tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["jobs"]["persistentVolumeClaim"] == {"claimName": f"{FULLNAME}-jobs"}
    assert "emptyDir" in volumes["tmp"]
    assert container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]


def test_configmap_is_exactly_what_the_settings_model_reads(
    default_docs: list[Manifest],
) -> None:
    data = one(default_docs, "ConfigMap")["data"]
    fields = {name.upper() for name in Settings.model_fields}
    assert set(data) <= fields, set(data) - fields
    assert {
        "JOBS_DIR",
        "MAX_CONCURRENT_JOBS",
        "JOB_TIMEOUT",
        "XTB_TIMEOUT",
        "POLL_INTERVAL",
        "HEALTH_CHECK_INTERVAL",
        "NAMESPACE",
        "RUNNER_IMAGE",
        "PVC_NAME",
        "RUNNER_CPU",
        "RUNNER_MEMORY",
        "NODE_SELECTOR",
        "TOLERATIONS",
        "AFFINITY",
        "PRIORITY_CLASS",
        "TTL_SECONDS_AFTER_FINISHED",
        "JOB_KEEP_SECONDS",
        "SUCCESS_EVENTS",
        "KUBE_POD_WATCH",
        "IMAGE_PULL_POLICY",
        "RELEASE",
        "KUBE_API_QPS",
        "KUBE_API_BURST",
    } <= set(data)
    assert all(isinstance(v, str) for v in data.values())
    settings = Settings.from_env(data)
    assert str(settings.jobs_dir) == "/jobs"
    assert settings.max_concurrent_jobs == 3
    assert settings.job_timeout == 3600
    assert settings.xtb_timeout == 300
    assert settings.poll_interval == 5
    assert settings.health_check_interval == 30
    assert settings.namespace == NAMESPACE
    # one release, one scope: the release's own label on its runner Jobs and its Lease
    assert settings.release == RELEASE
    assert (settings.kube_api_qps, settings.kube_api_burst) == (200, 400)
    assert settings.launch_events is False
    assert settings.runner_image == "qforge-runner:0.1.0"
    assert settings.image_pull_policy == "IfNotPresent"
    assert settings.pvc_name == f"{FULLNAME}-jobs"
    assert settings.runner_cpu == "1"
    assert settings.runner_memory == "1Gi"
    assert settings.node_selector == {}
    assert settings.tolerations == []
    assert settings.affinity == {}
    assert settings.priority_class is None
    # the controller deletes its finished Jobs (no TTL, no finalizer), 5 min after
    # their outcome is recorded; Events for failures only
    assert settings.ttl_seconds_after_finished is None
    assert settings.job_keep_seconds == 300 and settings.success_events is False
    assert settings.kube_pod_watch is False  # pods read when needed (docs/kubernetes.md)
    assert settings.runner_disruption_protection is True


def test_rbac_is_namespaced_and_least_privilege(default_docs: list[Manifest]) -> None:
    assert not [d for d in default_docs if d["kind"].startswith("Cluster")]
    role = one(default_docs, "Role")
    rules = role["rules"]
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert "resourceNames" not in rule or rule["resourceNames"]
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert granted[("batch", "jobs")] == {"get", "list", "watch", "create", "delete",
                                          "patch"}
    assert granted[("", "pods")] == {"get", "list", "watch"}
    # what the controller's code and kopf call, and nothing more (tests/cluster runs a
    # controller with only this Role's rights)
    # events: created (the runner Jobs' story, kopf's own) and listed (a cluster
    # autoscaler's FailedScheduling verdict on a pod that waits; never watched)
    assert granted[("", "events")] == {"create", "list"}
    assert granted[("coordination.k8s.io", "leases")] == {"get", "create", "update"}
    assert set(granted) == {("batch", "jobs"), ("", "pods"), ("", "events"),
                            ("coordination.k8s.io", "leases")}
    assert not {r for _, r in granted if r in {"secrets", "configmaps", "pods/exec"}}
    binding = one(default_docs, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    sa = one(default_docs, "ServiceAccount", component="controller")
    assert sa["metadata"]["name"] == FULLNAME
    assert sa["automountServiceAccountToken"] is False


def test_default_claim(default_docs: list[Manifest]) -> None:
    pvc = one(default_docs, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == f"{FULLNAME}-jobs"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert "storageClassName" not in pvc["spec"]  # the cluster's default class


def test_helm_test_pod_submits_water_and_waits_bounded(default_docs: list[Manifest]) -> None:
    pod = one(default_docs, "Pod", hook=True)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert_restricted(spec)
    assert spec["activeDeadlineSeconds"] == 660
    (container,) = spec["containers"]
    assert container["image"] == "qforge-controller:0.1.0"
    script = " ".join(container["command"] + container["args"])
    assert "qforge submit - " in script and 'timeout 600 qforge wait "$id"' in script
    assert 'qforge delete "$id"' in script
    assert "O 0.000000 0.000000 0.117790" in script and "H 0.000000 0.755453" in script
    assert container["envFrom"] == [{"configMapRef": {"name": FULLNAME}}]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["jobs"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-jobs"
    # ReadWriteOnce: the test pod must run on the controller's node.
    term = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "controller"


def test_helm_test_script_runs_water_and_leaves_nothing_in_the_store(
        default_docs: list[Manifest], tmp_path: Path) -> None:
    """The test pod's own script, run here against a real store with a real `qforge
    worker` (real xtb) in place of the controller: it exits 0 and the store holds no
    trace of the test afterwards."""
    pod = one(default_docs, "Pod", hook=True)
    (container,) = pod["spec"]["containers"]
    jobs = tmp_path / "jobs"
    bindir = str(Path(sys.executable).parent)  # where `qforge` is installed
    env = dict(os.environ, JOBS_DIR=str(jobs), HOME=str(tmp_path), TMPDIR=str(tmp_path),
               PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    with open(tmp_path / "worker.log", "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "qforge.cli.main", "worker", "--poll-interval", "0.5"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc = subprocess.run([*container["command"], *container["args"]], env=env,
                              capture_output=True, text=True, timeout=300, check=False)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job_id = proc.stdout.split("submitted ", 1)[1].split()[0]
    assert f"Deleted job {job_id} (COMPLETED)" in proc.stdout
    assert [p.name for p in jobs.iterdir() if p.name != ".qforge"] == []
    traces = [p for p in (jobs / ".qforge").rglob("*") if job_id in p.name]
    assert traces == [], traces


# --- values change what they should ------------------------------------------------


def _checksum(docs: list[Manifest]) -> str:
    deploy = one(docs, "Deployment", component="controller")
    return str(deploy["spec"]["template"]["metadata"]["annotations"]["checksum/config"])


def test_checksum_annotation_follows_the_config(helm: str, default_docs: list[Manifest]) -> None:
    same = render(helm)
    changed = render(helm, "--set", "maxConcurrentJobs=5")
    unrelated = render(helm, "--set", "controller.podAnnotations.team=chem")
    assert len(_checksum(default_docs)) == 64
    assert _checksum(same) == _checksum(default_docs)
    assert _checksum(changed) != _checksum(default_docs)
    assert _checksum(unrelated) == _checksum(default_docs)
    assert one(changed, "ConfigMap")["data"]["MAX_CONCURRENT_JOBS"] == "5"


def test_custom_values_reach_the_controller_settings(helm: str, tmp_path: Path) -> None:
    values: dict[str, Any] = {
        "maxConcurrentJobs": 50,
        "jobTimeout": 7200,
        "xtbTimeout": 600,
        "pollInterval": 2,
        "healthCheckInterval": 10,
        "runner": {
            "image": {"repository": "example/runner", "tag": "v9", "pullPolicy": "Always"},
            "resources": {"cpu": "4", "memory": "8Gi"},
            "scratchSize": "5Gi",
            "nodeSelector": {"pool": "chem"},
            "tolerations": [
                {"key": "chem", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}
            ],
            "affinity": {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 1,
                            "preference": {
                                "matchExpressions": [
                                    {"key": "cpu", "operator": "In", "values": ["fast"]}
                                ]
                            },
                        }
                    ]
                }
            },
            "priorityClassName": "batch-low",
            "ttlSecondsAfterFinished": 60,
            "disruptionProtection": False,
        },
        "persistence": {
            "accessModes": ["ReadWriteMany"],
            "storageClass": "nfs",
            "size": "100Gi",
            "mountPath": "/store",
            "subPath": "qforge",
        },
        "controller": {"extraArgs": ["--log-format", "json"], "healthPort": 9090},
    }
    docs = render(helm, values=values, tmp=tmp_path)
    data = one(docs, "ConfigMap")["data"]
    settings = Settings.from_env(data)
    assert settings.max_concurrent_jobs == 50
    assert settings.job_timeout == 7200
    assert settings.xtb_timeout == 600
    assert settings.poll_interval == 2
    assert settings.health_check_interval == 10
    assert settings.runner_image == "example/runner:v9"
    assert settings.image_pull_policy == "Always"
    assert settings.runner_cpu == "4"
    assert settings.runner_memory == "8Gi"
    assert settings.runner_scratch_size == "5Gi"
    assert settings.node_selector == {"pool": "chem"}
    assert settings.tolerations == values["runner"]["tolerations"]
    assert settings.affinity == values["runner"]["affinity"]
    assert settings.priority_class == "batch-low"
    assert settings.ttl_seconds_after_finished == 60
    assert settings.runner_disruption_protection is False
    assert str(settings.jobs_dir) == "/store"
    assert settings.pvc_sub_path == "qforge"
    pvc = one(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == "nfs"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "100Gi"
    deploy = one(docs, "Deployment", component="controller")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--liveness=http://0.0.0.0:9090/healthz", "--log-format",
                                 "json"]
    # what the chart passes is what `qforge controller` accepts
    from qforge.cli.main import build_parser

    parsed = build_parser().parse_args(["controller", *container["args"]])
    assert parsed.log_format == "json"
    assert container["ports"][0]["containerPort"] == 9090
    assert {"name": "jobs", "mountPath": "/store", "subPath": "qforge"} in container["volumeMounts"]
    # ReadWriteMany: the test pod may run anywhere.
    assert "affinity" not in one(docs, "Pod", hook=True)["spec"]


def test_millicore_runner_cpu_reaches_the_runner_jobs(helm: str, tmp_path: Path) -> None:
    docs = render(helm, values={"runner": {"resources": {"cpu": "500m"}}}, tmp=tmp_path)
    settings = Settings.from_env(one(docs, "ConfigMap")["data"])
    assert settings.runner_cpu == "500m"
    job = build_job_manifest("h2o-1", JobSpec(molecule=WATER), settings)
    runner = job["spec"]["template"]["spec"]["containers"][0]
    assert runner["resources"]["requests"]["cpu"] == runner["resources"]["limits"]["cpu"] == "500m"
    assert {"name": "OMP_NUM_THREADS", "value": "1"} in runner["env"]


def test_image_pull_secrets_reach_every_pod_the_chart_makes(helm: str, tmp_path: Path) -> None:
    """A private registry: the controller pod, the helm test pod and every runner pod
    (through the controller's settings) pull with the secrets named in the values."""
    docs = render(helm, values={"imagePullSecrets": ["qforge-registry"]}, tmp=tmp_path)
    want = [{"name": "qforge-registry"}]
    controller = one(docs, "Deployment", component="controller")
    assert controller["spec"]["template"]["spec"]["imagePullSecrets"] == want
    assert one(docs, "Pod", hook=True)["spec"]["imagePullSecrets"] == want
    settings = Settings.from_env(one(docs, "ConfigMap")["data"])
    assert settings.image_pull_secrets == ["qforge-registry"]
    job = build_job_manifest("h2o-1", JobSpec(molecule=WATER), settings)
    assert job["spec"]["template"]["spec"]["imagePullSecrets"] == want
    defaults = render(helm, tmp=tmp_path)
    controller = one(defaults, "Deployment", component="controller")
    assert "imagePullSecrets" not in controller["spec"]["template"]["spec"]
    bad = _template(helm, "--set", "imagePullSecrets[0]=Not_A_Name")
    assert bad.returncode != 0 and "imagePullSecrets" in bad.stderr


def test_existing_claim_is_used_and_not_created(helm: str) -> None:
    docs = render(helm, "--set", "persistence.existingClaim=shared-store")
    assert "PersistentVolumeClaim" not in kinds(docs)
    assert one(docs, "ConfigMap")["data"]["PVC_NAME"] == "shared-store"
    pod = one(docs, "Deployment", component="controller")["spec"]["template"]["spec"]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["shared-store"]


def test_storage_class_dash_asks_for_no_class(helm: str) -> None:
    docs = render(helm, "--set", "persistence.storageClass=-")
    assert one(docs, "PersistentVolumeClaim")["spec"]["storageClassName"] == ""


def test_no_claim_at_all_is_refused(helm: str) -> None:
    result = _template(helm, "--set", "persistence.create=false")
    assert result.returncode != 0
    assert "persistence.existingClaim" in result.stderr


def test_rbac_and_service_account_can_be_left_to_the_admin(helm: str) -> None:
    docs = render(
        helm,
        "--set",
        "rbac.create=false",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=qforge-admin-made",
    )
    assert not {"Role", "RoleBinding"} & set(kinds(docs))
    # only the server's own account (bound to nothing) is left
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"] == [
        f"{FULLNAME}-server"]
    pod = one(docs, "Deployment", component="controller")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "qforge-admin-made"


def test_names_follow_the_release(helm: str) -> None:
    result = _run(
        helm,
        "template",
        "chem",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert one(docs, "Deployment", component="controller")["metadata"]["name"] == "chem-qforge"
    assert one(docs, "ConfigMap")["data"]["PVC_NAME"] == "chem-qforge-jobs"
    long_name = render(helm, "--set", "fullnameOverride=" + "x" * 80)
    assert all(len(d["metadata"]["name"]) <= 63 for d in long_name)


# --- the schema rejects typos and wrong types ---------------------------------------


@pytest.mark.parametrize(
    ("values", "mentions"),
    [
        ({"maxConcurentJobs": 3}, "maxConcurentJobs"),
        ({"runner": {"resources": {"cpus": "2"}}}, "cpus"),
        ({"persistence": {"storage_class": "nfs"}}, "storage_class"),
        (
            {"controller": {"securityContext": {"readOnlyRootFileSystem": True}}},
            "readOnlyRootFileSystem",
        ),
    ],
)
def test_schema_rejects_a_typo(
    helm: str, tmp_path: Path, values: dict[str, Any], mentions: str
) -> None:
    result = _template(helm, values=values, tmp=tmp_path)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert mentions in result.stderr


@pytest.mark.parametrize(
    ("values", "mentions"),
    [
        ({"maxConcurrentJobs": "three"}, "maxConcurrentJobs"),
        ({"maxConcurrentJobs": 0}, "maxConcurrentJobs"),
        ({"jobTimeout": -1}, "jobTimeout"),
        ({"pollInterval": "5s"}, "pollInterval"),
        ({"runner": {"nodeSelector": ["pool=chem"]}}, "nodeSelector"),
        ({"runner": {"ttlSecondsAfterFinished": 1.5}}, "ttlSecondsAfterFinished"),
        ({"runner": {"resources": {"cpu": "two"}}}, "cpu"),
        ({"runner": {"resources": {"cpu": "0m"}}}, "cpu"),
        ({"runner": {"resources": {"cpu": "0.5"}}}, "cpu"),
        ({"runner": {"image": {"pullPolicy": "Sometimes"}}}, "pullPolicy"),
        ({"persistence": {"accessModes": ["ReadWriteOncePod"]}}, "accessModes"),
        ({"persistence": {"create": "yes"}}, "create"),
        ({"persistence": {"subPath": "../escape"}}, "subPath"),
        ({"controller": {"healthPort": 70000}}, "healthPort"),
    ],
)
def test_schema_rejects_a_wrong_type_or_value(
    helm: str, tmp_path: Path, values: dict[str, Any], mentions: str
) -> None:
    result = _template(helm, values=values, tmp=tmp_path)
    assert result.returncode != 0
    assert mentions in result.stderr


def test_schema_is_strict_everywhere() -> None:
    """Every object in values.schema.json with declared properties is closed."""
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: Any, where: str) -> Iterator[str]:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                yield where
            for key, child in node.items():
                yield from walk(child, f"{where}/{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                yield from walk(child, f"{where}/{i}")

    assert list(walk(schema, "#")) == []


def test_every_default_value_is_documented() -> None:
    """values.yaml: every key has a comment just above it, or sits inside a documented
    block (e.g. the keys of a securityContext documented as a whole)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    undocumented = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = (i > 0 and lines[i - 1].strip().startswith("#")) or any(d for _, d in stack)
        is_section = stripped.partition(":")[2].strip() == ""
        if not documented and not is_section:
            undocumented.append(stripped.partition(":")[0])
        stack.append((indent, documented))
    assert undocumented == []


def render_notes(helm: str, tmp: Path, *args: str) -> str:
    """NOTES.txt, rendered by helm through a copy of the chart that exposes it."""
    chart = tmp / "qforge"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        (chart / "templates" / "zz-notes.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n"
            '{{ include (print $.Template.BasePath "/NOTES.txt") . | indent 4 }}\n'
        )
    result = _run(
        helm,
        "template",
        RELEASE,
        str(chart),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        "--show-only",
        "templates/zz-notes.yaml",
        *args,
    )
    assert result.returncode == 0, result.stderr
    return str(yaml.safe_load(result.stdout)["data"]["notes"])


def test_notes_show_how_to_submit_and_inspect(helm: str, tmp_path: Path) -> None:
    notes = render_notes(helm, tmp_path)
    # the administrator's way in: a pod with the store mounted (the server's, when on)
    assert (
        f"kubectl -n {NAMESPACE} exec -i deploy/{FULLNAME}-server -- qforge submit - --wait"
        " < molecule.xyz" in notes
    )
    assert f"exec deploy/{FULLNAME}-server -- qforge list" in notes
    assert "get jobs -l app.kubernetes.io/name=qforge" in notes
    assert "-L qforge.io/method" in notes
    assert f"helm test {RELEASE}" in notes
    assert "ReadWriteMany" in notes  # the default claim is ReadWriteOnce: say what that means


def test_the_chart_names_the_kubernetes_it_needs(helm: str) -> None:
    """kubeVersion >= 1.29 (podReplacementPolicy on by default): an older cluster, or
    helm's offline default (v1.20) without --kube-version, is refused with helm's own
    message, which the README explains."""
    chart = str(ROOT / "charts" / "qforge")
    old = _run(helm, "template", RELEASE, chart, "--kube-version", "1.28.0")
    assert old.returncode != 0 and "kubeVersion" in old.stderr, old.stderr
    offline = _run(helm, "template", RELEASE, chart)
    assert offline.returncode != 0 and "kubeVersion" in offline.stderr, offline.stderr
    ok = _run(helm, "template", RELEASE, chart, "--kube-version", "1.29.0")
    assert ok.returncode == 0, ok.stderr


def test_fair_share_values_reach_the_settings(helm: str, tmp_path: Path) -> None:
    """fairShare.* become FAIR_SHARE_WEIGHTS, OWNER_MAX_RUNNING, OWNER_MAX_QUEUED and
    OWNER_LIMITS in the ConfigMap that both the controller and the server read."""
    values = {"fairShare": {"weights": {"alice": 2, "bob": 1.5},
                            "maxRunningPerOwner": 10, "maxQueuedPerOwner": 50000,
                            "ownerLimits": {"carol": {"max_running": 40}}}}
    docs = render(helm, values=values, tmp=tmp_path)
    settings = Settings.from_env(one(docs, "ConfigMap")["data"])
    assert settings.fair_share_weights == {"alice": 2.0, "bob": 1.5}
    assert settings.owner_max_running == 10 and settings.owner_max_queued == 50000
    assert settings.owner_limits["carol"].max_running == 40
    for component in ("controller", "server"):
        deployment = one(docs, "Deployment", component=component)
        env_from = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert {"configMapRef": {"name": FULLNAME}} in env_from
    # by default: equal shares, no limits
    defaults = Settings.from_env(one(render(helm, tmp=tmp_path), "ConfigMap")["data"])
    assert defaults.fair_share_weights == {} and defaults.owner_limits == {}
    assert defaults.owner_max_running is None and defaults.owner_max_queued is None
    # the schema refuses typos and weights that are not positive
    for bad in ({"fairShare": {"weight": {"alice": 2}}},
                {"fairShare": {"weights": {"alice": 0}}},
                {"fairShare": {"maxRunningPerOwner": 0}},
                {"fairShare": {"ownerLimits": {"carol": {"max_runing": 4}}}}):
        result = _template(helm, values=bad, tmp=tmp_path)
        assert result.returncode != 0 and "fairShare" in result.stderr, (bad, result.stderr)
