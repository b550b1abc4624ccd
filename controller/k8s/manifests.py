"""The runner's batch/v1 Job, built by one pure function.

`build_job_manifest` turns a job id, its spec and the controller's settings into the
Job the API server receives: plain dicts, no Kubernetes client, no I/O. Every field a
runner Job must have (names and labels, the deadline, the failure policy, the TTL, the
restricted pod, requests = limits, the job's own store folder) is set here and checked
in tests/unit/k8s/test_manifests.py.

Choices worth knowing:

* uid/gid 10001 is the non-root user of Dockerfile.runner (and Dockerfile.controller),
  so the files the runner writes into the job store belong to the same user as the
  controller's; fsGroup 10001 with ``OnRootMismatch`` makes the volume writable without
  a recursive chown of the whole store at each pod start.
* The pod passes Pod Security "restricted": non-root, no privilege escalation, every
  capability dropped, seccomp RuntimeDefault, only PVC and emptyDir volumes; the root
  filesystem is read-only and the runner writes only to /job (its own folder of the store,
  mounted with ``subPath``) and /scratch (HOME and TMPDIR).
* ``backoffLimit: 0`` with a ``podFailurePolicy``: a pod lost to a disruption (node
  drain, preemption, eviction by the API) is ignored and replaced, and so is one deleted
  by hand (the runner exits 143 on its SIGTERM); the runner's own exit codes fail the
  Job at once; anything else (OOMKilled, deadline) fails it through the
  zero backoff limit. ``podReplacementPolicy: Failed`` starts a replacement only once the
  old pod is gone, so two runners never write the same job folder.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Final

from qforge.ids import JOB_ID_RE
from qforge.k8s import naming
from qforge.k8s.autoscaling import protection_annotations
from qforge.kubesyntax import is_label_key, is_label_value
from qforge.settings import Settings
from qforge_runner.spec import JobSpec

__all__ = [
    "JOB_MOUNT_PATH",
    "RUNNER_CONTAINER",
    "RUNNER_FAILURE_EXIT_CODES",
    "RUNNER_GID",
    "RUNNER_STOPPED_EXIT_CODE",
    "RUNNER_UID",
    "SCRATCH_MOUNT_PATH",
    "ManifestError",
    "active_deadline_seconds",
    "build_job_manifest",
    "job_annotations",
    "job_labels",
    "store_sub_path",
]

RUNNER_UID: Final = 10001
RUNNER_GID: Final = 10001
RUNNER_CONTAINER: Final = "runner"
JOB_MOUNT_PATH: Final = "/job"
SCRATCH_MOUNT_PATH: Final = "/scratch"
STORE_VOLUME: Final = "job-store"
SCRATCH_VOLUME: Final = "scratch"
# `qforge-runner` exits 1 when the calculation failed (its typed error is in result.json)
# and 2 on invalid input or usage; neither gets better on a retry.
RUNNER_FAILURE_EXIT_CODES: Final = (1, 2)
# ... and 143 (128 + SIGTERM) when it was stopped from outside: its pod deleted (by hand,
# or anything else that deletes pods without a DisruptionTarget condition). Not the
# calculation's fault: the Job replaces the pod, as it does after a disruption.
RUNNER_STOPPED_EXIT_CODE: Final = 143



class ManifestError(ValueError):
    """The job cannot be turned into a valid Kubernetes Job (says which field, and why)."""


def active_deadline_seconds(spec: JobSpec, settings: Settings) -> int:
    """The job's timeout (its own, else JOB_TIMEOUT) in whole seconds, rounded up, ≥ 1."""
    timeout = spec.timeout if spec.timeout is not None else settings.job_timeout
    return max(1, math.ceil(timeout))


def store_sub_path(job_id: str, settings: Settings) -> str:
    """The job's own folder inside the PVC, mounted as the runner's /job."""
    return f"{settings.pvc_sub_path}/{job_id}" if settings.pvc_sub_path else job_id


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _user_labels(spec: JobSpec, ours: dict[str, str]) -> dict[str, str]:
    """The spec's labels, copied as-is, minus any key in our or Kubernetes' domains."""
    out: dict[str, str] = {}
    for key, value in sorted(spec.labels.items()):
        if key in ours or naming.is_reserved_label_key(key):
            continue  # never override qforge's labels or write into reserved domains
        if not is_label_key(key):
            raise ManifestError(f"label key {key!r} is not a valid Kubernetes label key")
        if not is_label_value(value):
            raise ManifestError(f"label {key}={value!r}: not a valid Kubernetes label value")
        out[key] = value
    return out


def job_labels(job_id: str, spec: JobSpec, *, attempt: int = 1,
               release: str | None = None, group: str | None = None) -> dict[str, str]:
    """Labels of the Job and of its pod: qforge's (with the release's instance label and
    the job's group, when it is a valid label value), plus the user's that do not clash."""
    ours = naming.base_labels(job_id, release)
    ours[naming.LABEL_ATTEMPT] = str(attempt)
    ours[naming.LABEL_METHOD] = str(spec.method)
    ours[naming.LABEL_TASK] = str(spec.task)
    formula = naming.label_value_or_none(spec.molecule.formula)
    if formula:
        ours[naming.LABEL_FORMULA] = formula
    group_label = naming.label_value_or_none(group) if group else None
    if group_label:
        ours[naming.LABEL_GROUP] = group_label
    return {**_user_labels(spec, ours), **ours}


def job_annotations(job_id: str, spec: JobSpec, *, attempt: int = 1) -> dict[str, str]:
    """Annotations of the Job: method, task, formula, the exact job id, attempt, name."""
    annotations = {
        naming.ANNOTATION_JOB_ID: job_id,
        naming.ANNOTATION_ATTEMPT: str(attempt),
        naming.ANNOTATION_METHOD: str(spec.method),
        naming.ANNOTATION_TASK: str(spec.task),
        naming.ANNOTATION_FORMULA: spec.molecule.formula,
    }
    if spec.name:
        annotations[naming.ANNOTATION_NAME] = spec.name
    return annotations


def _pod_failure_policy() -> dict[str, Any]:
    return {
        "rules": [
            # Node drain, preemption, API-initiated eviction: not the calculation's fault.
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            # The runner's own verdict: retrying cannot help.
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": RUNNER_CONTAINER,
                    "operator": "In",
                    "values": list(RUNNER_FAILURE_EXIT_CODES),
                },
            },
            # Its pod was deleted (SIGTERM): not the calculation's fault either.
            {
                "action": "Ignore",
                "onExitCodes": {
                    "containerName": RUNNER_CONTAINER,
                    "operator": "In",
                    "values": [RUNNER_STOPPED_EXIT_CODE],
                },
            },
        ]
    }


def cpu_cores(quantity: str) -> int:
    """Whole cores for OpenMP from a Kubernetes CPU quantity ("2", "1.5", "500m")."""
    text = quantity.strip()
    try:
        value = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise ManifestError(f"RUNNER_CPU {quantity!r} is not a CPU quantity") from None
    if not value > 0:
        raise ManifestError(f"RUNNER_CPU {quantity!r} must be more than 0")
    return max(1, math.ceil(value))


def _runner_container(job_id: str, spec: JobSpec, settings: Settings) -> dict[str, Any]:
    # CPU is the job's own, else RUNNER_CPU; OpenMP uses that many threads (whole cores,
    # rounded up). Memory is the job's own, else RUNNER_MEMORY.
    cpu = str(spec.cpu) if spec.cpu is not None else settings.runner_cpu
    quantities = {"cpu": cpu, "memory": spec.memory or settings.runner_memory}
    env = {
        "OMP_NUM_THREADS": str(spec.cpu or cpu_cores(settings.runner_cpu)),
        # The runner stops xtb at the smallest of these and the spec's own timeout and
        # records a typed `timeout`; the Job's activeDeadlineSeconds is the backstop.
        "XTB_TIMEOUT": _seconds(settings.xtb_timeout),
        "JOB_TIMEOUT": str(active_deadline_seconds(spec, settings)),
        "QFORGE_SCRATCH": SCRATCH_MOUNT_PATH,
        "HOME": SCRATCH_MOUNT_PATH,
        "TMPDIR": SCRATCH_MOUNT_PATH,
        "QFORGE_JOB_ID": job_id,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return {
        "name": RUNNER_CONTAINER,
        "image": settings.runner_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["qforge-runner", JOB_MOUNT_PATH],
        "workingDir": JOB_MOUNT_PATH,
        "env": [{"name": k, "value": v} for k, v in env.items()] + [
            # where it runs, for its report (result.json): the controller then knows
            # a job's node without watching or reading its pod (KUBE_POD_WATCH=false)
            {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
            for name, path in (("NODE_NAME", "spec.nodeName"), ("POD_NAME", "metadata.name"))
        ],
        "resources": {"requests": dict(quantities), "limits": dict(quantities)},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {
                "name": STORE_VOLUME,
                "mountPath": JOB_MOUNT_PATH,
                "subPath": store_sub_path(job_id, settings),
            },
            {"name": SCRATCH_VOLUME, "mountPath": SCRATCH_MOUNT_PATH},
        ],
        # The controller reads a crashed runner's last words from the pod status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def build_job_manifest(
    job_id: str, spec: JobSpec, settings: Settings, *, attempt: int = 1,
    group: str | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job that runs one calculation. Pure: same inputs, same dict.

    `attempt` (≥ 1) numbers the launches of one job: each attempt has its own Job name,
    so a create answering "already exists" always means "this attempt was launched".
    `group`: the record's group (campaign), the `qforge.io/group` label.
    Raises ManifestError when the id, a label or a quantity cannot be used.
    """
    if not JOB_ID_RE.fullmatch(job_id):
        raise ManifestError(f"job id {job_id!r} is not a valid job id")
    if attempt < 1:
        raise ManifestError(f"attempt must be >= 1, got {attempt}")
    labels = job_labels(job_id, spec, attempt=attempt, release=settings.release,
                        group=group)
    annotations = job_annotations(job_id, spec, attempt=attempt)

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_GID,
            "fsGroup": RUNNER_GID,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_runner_container(job_id, spec, settings)],
        "volumes": [
            {
                "name": STORE_VOLUME,
                "persistentVolumeClaim": {"claimName": settings.pvc_name},
            },
            {"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": settings.runner_scratch_size}},
        ],
    }
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod_spec["tolerations"] = copy.deepcopy(settings.tolerations)
    if settings.affinity:
        pod_spec["affinity"] = copy.deepcopy(settings.affinity)
    if settings.priority_class:
        pod_spec["priorityClassName"] = settings.priority_class
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in settings.image_pull_secrets]

    job_spec: dict[str, Any] = {
        "parallelism": 1,
        "completions": 1,
        "backoffLimit": 0,
        "activeDeadlineSeconds": active_deadline_seconds(spec, settings),
        "podFailurePolicy": _pod_failure_policy(),
        "podReplacementPolicy": "Failed",
        "template": {
            "metadata": {
                "labels": dict(labels),
                "annotations": {
                    **protection_annotations(settings.runner_disruption_protection),
                    **settings.runner_pod_annotations,
                    naming.ANNOTATION_JOB_ID: job_id,
                },
            },
            "spec": pod_spec,
        },
    }
    metadata: dict[str, Any] = {
        "name": naming.job_name(job_id, attempt),
        "namespace": settings.namespace,
        "labels": labels,
        "annotations": annotations,
    }
    if settings.ttl_seconds_after_finished is not None:
        # Kubernetes' TTL controller deletes the finished Job: qforge's finalizer keeps
        # it until its outcome is recorded (else the controller alone deletes it).
        job_spec["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
        metadata["finalizers"] = [naming.FINALIZER]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
            "spec": job_spec}
