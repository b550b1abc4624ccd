"""The runner's batch/v1 Job: every field controller/k8s/manifests.py sets, and Pod Security
"restricted"."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from qforge.k8s import naming
from qforge.k8s.manifests import (
    RUNNER_FAILURE_EXIT_CODES,
    ManifestError,
    active_deadline_seconds,
    build_job_manifest,
    store_sub_path,
)
from qforge.settings import Settings
from qforge_runner.elements import SYMBOLS
from qforge_runner.spec import JobSpec
from tests.molecules import WATER

JOB_ID = "water_20261128_133039_k3f9"


def spec(**fields: Any) -> JobSpec:
    return JobSpec(molecule=WATER, **fields)


def settings(**fields: Any) -> Settings:
    return Settings(**fields)


def job(
    job_id: str = JOB_ID, s: JobSpec | None = None, st: Settings | None = None, **kw: Any
) -> dict[str, Any]:
    return build_job_manifest(job_id, s or spec(), st or settings(), **kw)


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return result


def runner(manifest: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(manifest)["containers"]
    result: dict[str, Any] = container
    return result


def env(manifest: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in runner(manifest)["env"] if "value" in e}


# --- identity: name, labels, annotations ---------------------------------------------


def test_is_a_batch_v1_job_in_the_configured_namespace() -> None:
    m = job(st=settings(namespace="chem"))
    assert m["apiVersion"] == "batch/v1"
    assert m["kind"] == "Job"
    assert m["metadata"]["namespace"] == "chem"


def test_name_is_the_deterministic_job_name() -> None:
    m = job()
    assert m["metadata"]["name"] == naming.job_name(JOB_ID)
    assert job("water")["metadata"]["name"] == "qf-water"
    assert job(attempt=2)["metadata"]["name"] == naming.job_name(JOB_ID, 2)
    assert job(attempt=2)["metadata"]["name"] != m["metadata"]["name"]


def test_same_inputs_give_the_same_manifest() -> None:
    assert job() == job()
    assert json.dumps(job(), sort_keys=True) == json.dumps(job(), sort_keys=True)


def test_labels_identify_qforge_runner_jobs() -> None:
    labels = job()["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "qforge"
    assert labels["app.kubernetes.io/component"] == "runner"
    assert labels["app.kubernetes.io/managed-by"] == "qforge-controller"
    assert labels["qforge.io/job-id"] == JOB_ID
    assert labels["qforge.io/attempt"] == "1"
    # labels too, so that `kubectl get jobs -L qforge.io/method` shows them
    assert labels["qforge.io/method"] == "gfn2"
    assert labels["qforge.io/task"] == "opt"
    assert labels["qforge.io/formula"] == "H2O"


def test_selector_matches_the_labels() -> None:
    labels = job()["metadata"]["labels"]
    for term in naming.selector(JOB_ID, release="qforge").split(","):
        key, value = term.split("=")
        assert labels[key] == value


def test_one_release_one_scope_its_instance_label_on_job_and_pod() -> None:
    manifest = build_job_manifest(JOB_ID, spec(), settings(release="blue"))
    for labels in (manifest["metadata"]["labels"],
                   manifest["spec"]["template"]["metadata"]["labels"]):
        assert labels["app.kubernetes.io/instance"] == "blue"
    other = naming.selector(release="green")
    assert any(term not in manifest["metadata"]["labels"].items()
               for term in (tuple(t.split("=")) for t in other.split(",")))
    assert naming.lease_name("blue") == "blue-controller"
    assert naming.lease_name("qforge") == "qforge-controller"  # the name before releases


def test_user_labels_never_move_a_job_into_another_release() -> None:
    manifest = build_job_manifest(
        JOB_ID, spec(labels={"app.kubernetes.io/instance": "green"}),
        settings(release="blue"))
    assert manifest["metadata"]["labels"]["app.kubernetes.io/instance"] == "blue"


def test_the_group_is_a_label_of_job_and_pod_when_it_can_be_one() -> None:
    manifest = job(group="campaign-7")
    for labels in (manifest["metadata"]["labels"],
                   manifest["spec"]["template"]["metadata"]["labels"]):
        assert labels["qforge.io/group"] == "campaign-7"
    assert "qforge.io/group" not in job()["metadata"]["labels"]
    assert "qforge.io/group" not in job(group="x" * 64)["metadata"]["labels"]  # too long
    # a user's label cannot put a job in another group
    assert job(s=spec(labels={"qforge.io/group": "other"}), group="mine")[
        "metadata"]["labels"]["qforge.io/group"] == "mine"


def test_a_job_a_ttl_deletes_carries_the_outcome_finalizer() -> None:
    """Its TTL cannot remove it before a controller has recorded its outcome. Without a
    TTL (the default) the controller is the only deleter: no finalizer."""
    assert job(st=settings(ttl_seconds_after_finished=60))["metadata"]["finalizers"] == [
        naming.FINALIZER] == ["qforge.io/record-outcome"]
    assert "finalizers" not in job()["metadata"]


def test_pod_carries_the_same_labels_and_the_exact_id() -> None:
    m = job()
    template = m["spec"]["template"]["metadata"]
    assert template["labels"] == m["metadata"]["labels"]
    assert template["annotations"]["qforge.io/job-id"] == JOB_ID


def test_extra_pod_annotations_never_replace_the_job_id() -> None:
    extra = {"sidecar.istio.io/inject": "false", "qforge.io/job-id": "other"}
    template = job(st=settings(runner_pod_annotations=extra))["spec"]["template"]["metadata"]
    assert template["annotations"] == {"sidecar.istio.io/inject": "false",
                                       "karpenter.sh/do-not-disrupt": "true",
                                       "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
                                       "qforge.io/job-id": JOB_ID}


def test_runner_pods_are_never_evicted_to_consolidate_unless_turned_off() -> None:
    protected = job()["spec"]["template"]["metadata"]["annotations"]
    assert protected["karpenter.sh/do-not-disrupt"] == "true"
    assert protected["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    # the Job itself carries none (autoscalers read pods)
    assert "karpenter.sh/do-not-disrupt" not in job()["metadata"]["annotations"]
    off = job(st=settings(runner_disruption_protection=False))["spec"]["template"]["metadata"]
    assert off["annotations"] == {"qforge.io/job-id": JOB_ID}
    # a user's own annotation wins over ours (e.g. safe-to-evict true on a test cluster)
    mine = job(st=settings(runner_pod_annotations={
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}))
    assert mine["spec"]["template"]["metadata"]["annotations"][
        "cluster-autoscaler.kubernetes.io/safe-to-evict"] == "true"


def test_annotations_carry_method_task_formula_and_the_exact_id() -> None:
    m = job(s=spec(method="gfnff", task="sp", name="my-water"))
    assert m["metadata"]["annotations"] == {
        "qforge.io/method": "gfnff",
        "qforge.io/task": "sp",
        "qforge.io/formula": "H2O",
        "qforge.io/job-id": JOB_ID,
        "qforge.io/attempt": "1",
        "qforge.io/name": "my-water",
    }


def test_an_id_that_is_no_label_value_is_still_found() -> None:
    m = job("water_")
    assert naming.job_id_from_metadata(m["metadata"]) == "water_"
    assert m["metadata"]["labels"]["qforge.io/job-id"] == naming.job_id_label_value("water_")


def test_user_labels_are_copied_but_never_override_ours() -> None:
    s = spec(
        labels={
            "project": "solvation",
            "example.com/team": "chem",
            "app.kubernetes.io/name": "not-qforge",
            "qforge.io/job-id": "someone-else",
            "qforge.io/anything": "x",
            "kubernetes.io/hostname": "node-1",
        }
    )
    labels = job(s=s)["metadata"]["labels"]
    assert labels["project"] == "solvation"
    assert labels["example.com/team"] == "chem"
    assert labels["app.kubernetes.io/name"] == "qforge"
    assert labels["qforge.io/job-id"] == JOB_ID
    assert "qforge.io/anything" not in labels
    assert "kubernetes.io/hostname" not in labels
    assert job(s=s)["spec"]["template"]["metadata"]["labels"]["project"] == "solvation"


def test_a_formula_too_long_for_a_label_stays_an_annotation_only() -> None:
    # One atom each of H..Zr, 3 Å apart: a 69-character Hill formula.
    symbols = SYMBOLS[:40]
    atoms = "\n".join(f"{sym} 0.0 0.0 {3.0 * i:.1f}" for i, sym in enumerate(symbols))
    big = JobSpec(molecule=f"{len(symbols)}\nforty elements\n{atoms}\n")
    assert len(big.molecule.formula) > 63
    m = job(s=big)
    assert m["metadata"]["annotations"]["qforge.io/formula"] == big.molecule.formula
    assert "qforge.io/formula" not in m["metadata"]["labels"]


def test_invalid_user_label_is_refused_with_its_name() -> None:
    s = spec().model_copy(update={"labels": {"bad key!": "x"}})
    with pytest.raises(ManifestError, match="bad key!"):
        job(s=s)


@pytest.mark.parametrize("bad", ["", "Water", "../etc", "a/b", "-x", "x" * 64, "water\n"])
def test_invalid_job_id_is_refused(bad: str) -> None:
    with pytest.raises(ManifestError, match="job id"):
        job(bad)


def test_attempt_below_one_is_refused() -> None:
    with pytest.raises(ManifestError, match="attempt"):
        job(attempt=0)


# --- the Job's lifecycle -------------------------------------------------------------


def test_deadline_is_the_jobs_own_timeout() -> None:
    assert job(s=spec(timeout=120))["spec"]["activeDeadlineSeconds"] == 120
    assert job(s=spec(timeout=0.2))["spec"]["activeDeadlineSeconds"] == 1
    assert job(s=spec(timeout=90.5))["spec"]["activeDeadlineSeconds"] == 91


def test_deadline_defaults_to_job_timeout() -> None:
    assert job()["spec"]["activeDeadlineSeconds"] == 3600
    assert job(st=settings(job_timeout=7200))["spec"]["activeDeadlineSeconds"] == 7200
    deadline = job(st=settings(job_timeout=0.4))["spec"]["activeDeadlineSeconds"]
    assert deadline == 1 and isinstance(deadline, int)
    assert active_deadline_seconds(spec(), settings()) == 3600


def test_no_retries_but_disruptions_are_ignored_and_runner_errors_fail_fast() -> None:
    s = job()["spec"]
    assert s["backoffLimit"] == 0
    assert s["parallelism"] == 1 and s["completions"] == 1
    assert s["podReplacementPolicy"] == "Failed"
    rules = s["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert rules[1] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "runner", "operator": "In", "values": [1, 2]},
    }
    assert RUNNER_FAILURE_EXIT_CODES == (1, 2)
    # a pod deleted by hand: the runner exits 143 on its SIGTERM; the Job replaces it
    assert rules[2] == {
        "action": "Ignore",
        "onExitCodes": {"containerName": "runner", "operator": "In", "values": [143]},
    }
    assert len(rules) == 3
    # podFailurePolicy requires restartPolicy Never
    assert pod_spec(job())["restartPolicy"] == "Never"


def test_ttl_after_finished_follows_the_settings() -> None:
    assert "ttlSecondsAfterFinished" not in job()["spec"]  # the controller deletes them
    assert job(st=settings(ttl_seconds_after_finished=0))["spec"]["ttlSecondsAfterFinished"] == 0
    assert (
        "ttlSecondsAfterFinished" not in job(st=settings(ttl_seconds_after_finished=None))["spec"]
    )


def test_no_selector_is_set_by_hand() -> None:
    s = job()["spec"]
    assert "selector" not in s and "manualSelector" not in s


# --- the pod ---------------------------------------------------------------------------


def test_pod_has_no_service_account_token_and_no_service_links() -> None:
    p = pod_spec(job())
    assert p["automountServiceAccountToken"] is False
    assert p["enableServiceLinks"] is False
    assert "serviceAccountName" not in p


def test_pod_runs_as_the_images_non_root_user() -> None:
    sc = pod_spec(job())["securityContext"]
    assert sc == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_runner_container() -> None:
    c = runner(
        job(st=settings(runner_image="reg.example/qforge-runner:1.2", image_pull_policy="Always"))
    )
    assert c["name"] == "runner"
    assert c["image"] == "reg.example/qforge-runner:1.2"
    assert c["imagePullPolicy"] == "Always"
    assert c["command"] == ["qforge-runner", "/job"]
    assert c["workingDir"] == "/job"
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_runner_environment() -> None:
    e = env(job(s=spec(cpu=4), st=settings(xtb_timeout=300)))
    assert e["OMP_NUM_THREADS"] == "4"
    assert e["XTB_TIMEOUT"] == "300"
    assert e["JOB_TIMEOUT"] == "3600"
    assert env(job(s=spec(timeout=90.5)))["JOB_TIMEOUT"] == "91"
    assert e["QFORGE_SCRATCH"] == "/scratch"
    assert e["HOME"] == "/scratch"
    assert e["TMPDIR"] == "/scratch"
    assert e["QFORGE_JOB_ID"] == JOB_ID
    assert env(job(st=settings(xtb_timeout=12.5)))["XTB_TIMEOUT"] == "12.5"
    assert all(isinstance(v, str) for v in e.values())


def test_the_runner_learns_its_node_and_pod_from_the_downward_api() -> None:
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
              for e in runner(job())["env"] if "valueFrom" in e}
    assert fields == {"NODE_NAME": "spec.nodeName", "POD_NAME": "metadata.name"}


@pytest.mark.parametrize(
    ("cpu", "memory", "default_memory", "expected"),
    [
        (1, None, "1Gi", {"cpu": "1", "memory": "1Gi"}),
        (8, "16Gi", "1Gi", {"cpu": "8", "memory": "16Gi"}),
        (2, None, "3Gi", {"cpu": "2", "memory": "3Gi"}),
    ],
)
def test_requests_equal_limits(
    cpu: int, memory: str | None, default_memory: str, expected: dict[str, str]
) -> None:
    m = job(s=spec(cpu=cpu, memory=memory), st=settings(runner_memory=default_memory))
    assert runner(m)["resources"] == {"requests": expected, "limits": expected}
    assert env(m)["OMP_NUM_THREADS"] == expected["cpu"]


@pytest.mark.parametrize(("runner_cpu", "omp"), [("1", "1"), ("2", "2"), ("500m", "1"),
                                                 ("1.5", "2")])
def test_a_job_without_cpu_gets_runner_cpu(runner_cpu: str, omp: str) -> None:
    m = job(s=spec(), st=settings(runner_cpu=runner_cpu))
    assert runner(m)["resources"]["requests"]["cpu"] == runner_cpu
    assert runner(m)["resources"]["limits"]["cpu"] == runner_cpu
    assert env(m)["OMP_NUM_THREADS"] == omp
    # the job's own --cpu wins
    assert runner(job(s=spec(cpu=3), st=settings(runner_cpu=runner_cpu)))["resources"][
        "limits"]["cpu"] == "3"


def test_a_bad_runner_cpu_is_a_clear_error() -> None:
    with pytest.raises(ManifestError, match="RUNNER_CPU"):
        job(st=settings(runner_cpu="lots"))


def test_the_store_is_mounted_with_the_jobs_own_folder() -> None:
    m = job(st=settings(pvc_name="my-store"))
    mounts = {v["mountPath"]: v for v in runner(m)["volumeMounts"]}
    assert mounts["/job"] == {"name": "job-store", "mountPath": "/job", "subPath": JOB_ID}
    assert mounts["/scratch"] == {"name": "scratch", "mountPath": "/scratch"}
    volumes = {v["name"]: v for v in pod_spec(m)["volumes"]}
    assert volumes["job-store"] == {
        "name": "job-store",
        "persistentVolumeClaim": {"claimName": "my-store"},
    }
    assert volumes["scratch"] == {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}
    assert len(volumes) == 2


def test_store_below_a_folder_of_the_claim() -> None:
    st = settings(pvc_sub_path="qforge/jobs", runner_scratch_size="4Gi")
    m = job(st=st)
    assert runner(m)["volumeMounts"][0]["subPath"] == f"qforge/jobs/{JOB_ID}"
    assert store_sub_path("w", st) == "qforge/jobs/w"
    assert pod_spec(m)["volumes"][1]["emptyDir"] == {"sizeLimit": "4Gi"}


def test_scheduling_fields_are_left_out_when_unset() -> None:
    p = pod_spec(job())
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert key not in p


def test_scheduling_fields_come_from_the_settings() -> None:
    tolerations = [{"key": "chem", "operator": "Exists", "effect": "NoSchedule"}]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "cpu", "operator": "In", "values": ["fast"]}]}
                ]
            }
        }
    }
    st = settings(
        node_selector={"pool": "chem"},
        tolerations=tolerations,
        affinity=affinity,
        priority_class="batch-low",
    )
    p = pod_spec(job(st=st))
    assert p["nodeSelector"] == {"pool": "chem"}
    assert p["tolerations"] == tolerations
    assert p["affinity"] == affinity
    assert p["priorityClassName"] == "batch-low"


def test_the_manifest_shares_no_mutable_state_with_the_settings() -> None:
    st = settings(
        node_selector={"pool": "chem"},
        tolerations=[{"key": "k", "operator": "Exists"}],
        affinity={"nodeAffinity": {}},
    )
    before = copy.deepcopy(st.model_dump())
    p = pod_spec(job(st=st))
    p["nodeSelector"]["x"] = "y"
    p["tolerations"][0]["key"] = "changed"
    p["affinity"]["podAffinity"] = {}
    assert st.model_dump() == before


def test_manifest_is_plain_json() -> None:
    m = job(s=spec(labels={"project": "p"}, timeout=10, memory="2Gi"))
    assert json.loads(json.dumps(m)) == m


# --- Pod Security "restricted", rule by rule ----------------------------------------------

RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


@pytest.mark.parametrize(
    "st",
    [
        settings(),
        settings(node_selector={"a": "b"}, priority_class="p", pvc_sub_path="x"),
    ],
)
@pytest.mark.parametrize("s", [spec(), spec(cpu=8, memory="4Gi", timeout=5, labels={"a": "b"})])
def test_pod_passes_pod_security_restricted(st: Settings, s: JobSpec) -> None:
    p = pod_spec(build_job_manifest(JOB_ID, s, st))
    psc = p["securityContext"]
    # baseline: no host namespaces, no host ports, no privileged, no hostPath
    for key in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        assert key not in p
    assert p.get("shareProcessNamespace") is not True
    # restricted: volume types
    for volume in p["volumes"]:
        assert set(volume) - {"name"} <= RESTRICTED_VOLUME_TYPES
    # restricted: pod-level seccomp and non-root
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] != 0
    assert "sysctls" not in psc
    for c in p["containers"] + p.get("initContainers", []) + p.get("ephemeralContainers", []):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["privileged"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "add" not in sc["capabilities"]
        assert sc.get("runAsUser", psc["runAsUser"]) != 0
        assert sc.get("runAsNonRoot", psc["runAsNonRoot"]) is True
        assert "seccompProfile" not in sc or sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert all("hostPort" not in port for port in c.get("ports", []))
        assert "procMount" not in sc and "seLinuxOptions" not in sc
        assert sc["readOnlyRootFilesystem"] is True


# --- every field is a real batch/v1 field ---------------------------------------------


@pytest.mark.parametrize(
    "st",
    [
        settings(),
        settings(
            node_selector={"a": "b"},
            tolerations=[{"key": "k", "operator": "Exists"}],
            affinity={"nodeAffinity": {}},
            priority_class="p",
        ),
    ],
)
def test_every_field_survives_the_kubernetes_clients_typed_models(st: Settings) -> None:
    """Round-trip through the client's V1Job model: a misspelt field would be dropped."""
    client = pytest.importorskip("kubernetes.client")
    api = client.ApiClient()
    m = build_job_manifest(JOB_ID, spec(labels={"a": "b"}, memory="2Gi", timeout=60), st)
    typed = api.deserialize(json.dumps(m), "V1Job", "application/json")
    assert api.sanitize_for_serialization(typed) == m


def test_runner_pods_pull_with_the_configured_secrets_and_none_by_default() -> None:
    assert "imagePullSecrets" not in pod_spec(job())
    m = job(st=settings(image_pull_secrets=["qforge-registry", "mirror"]))
    assert pod_spec(m)["imagePullSecrets"] == [{"name": "qforge-registry"}, {"name": "mirror"}]
