"""Names, labels and annotations of the Kubernetes objects qforge creates.

Pure: no I/O and no Kubernetes client. Everything here is deterministic, so the
controller can always recompute an object's name from a job id and read a job id back
from an object.

Job names
---------
A Job name must be a DNS-1123 label (``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, at most 63
characters) and must be a function of the job id alone, so that a create answering
"already exists" means "already launched".

Two families of names, disjoint by construction:

* plain: ``qf-<job id>`` when the id is already a DNS-1123 label short enough and does
  not end like a hashed name (``-`` + 10 hex digits). Identity on the id, so injective.
* hashed: ``qf-<sanitized id, truncated>-<10 hex digits of sha256>``. The hash covers
  the exact id (and the attempt, for attempts after the first), so two ids share a name
  only on a 40-bit hash collision of two ids whose sanitized prefixes are also equal.

Every hashed name ends in ``-`` + 10 hex digits and no plain name does, so a plain name
never equals a hashed one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final

from qforge.kubesyntax import is_label_value

__all__ = [
    "ANNOTATION_ATTEMPT",
    "ANNOTATION_FORMULA",
    "ANNOTATION_JOB_ID",
    "ANNOTATION_METHOD",
    "ANNOTATION_NAME",
    "ANNOTATION_TASK",
    "APP_NAME",
    "COMPONENT_RUNNER",
    "FINALIZER",
    "JOB_NAME_PREFIX",
    "LABEL_ATTEMPT",
    "LABEL_COMPONENT",
    "LABEL_FORMULA",
    "LABEL_GROUP",
    "LABEL_INSTANCE",
    "LABEL_JOB_ID",
    "LABEL_MANAGED_BY",
    "LABEL_METHOD",
    "LABEL_NAME",
    "LABEL_TASK",
    "MANAGED_BY",
    "QFORGE_PREFIX",
    "RESERVED_LABEL_DOMAINS",
    "RUNNER_SELECTOR",
    "base_labels",
    "is_dns1123_label",
    "is_release_name",
    "is_reserved_label_key",
    "job_id_from_metadata",
    "job_id_label_value",
    "job_name",
    "label_value_or_none",
    "lease_name",
    "selector",
]

# --- label and annotation keys ------------------------------------------------------

QFORGE_PREFIX: Final = "qforge.io"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
# The release (one store, one cap, one leader): runner Jobs of two releases in one
# namespace never count against, or get adopted by, each other's controller.
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_JOB_ID: Final = f"{QFORGE_PREFIX}/job-id"
LABEL_ATTEMPT: Final = f"{QFORGE_PREFIX}/attempt"
# Method, task and formula are also labels (when they are valid label values), because
# `kubectl get jobs -L KEY` shows labels, not annotations.
LABEL_METHOD: Final = f"{QFORGE_PREFIX}/method"
LABEL_TASK: Final = f"{QFORGE_PREFIX}/task"
LABEL_FORMULA: Final = f"{QFORGE_PREFIX}/formula"
# The group (campaign) the job was submitted in (`--group`): `kubectl get jobs -l
# qforge.io/group=NAME` shows a campaign's Jobs.
LABEL_GROUP: Final = f"{QFORGE_PREFIX}/group"

ANNOTATION_METHOD: Final = f"{QFORGE_PREFIX}/method"
ANNOTATION_TASK: Final = f"{QFORGE_PREFIX}/task"
ANNOTATION_FORMULA: Final = f"{QFORGE_PREFIX}/formula"
# The exact job id: a label value cannot hold every valid id (ids may end in "_" or "-").
ANNOTATION_JOB_ID: Final = f"{QFORGE_PREFIX}/job-id"
ANNOTATION_ATTEMPT: Final = f"{QFORGE_PREFIX}/attempt"
ANNOTATION_NAME: Final = f"{QFORGE_PREFIX}/name"

APP_NAME: Final = "qforge"
COMPONENT_RUNNER: Final = "runner"
MANAGED_BY: Final = "qforge-controller"

# Label domains a user's labels may not write into (ours, and Kubernetes' own).
RESERVED_LABEL_DOMAINS: Final = (QFORGE_PREFIX, "kubernetes.io", "k8s.io")

# On runner Jobs that Kubernetes' TTL controller deletes (TTL_SECONDS_AFTER_FINISHED set),
# from their creation until their outcome is in the store: a finished Job that its TTL
# removes while no controller runs stays (deletionTimestamp set) until a controller has
# recorded its outcome, so a restarted controller never takes a vanished Job for one that
# was never created, and never launches that job again. Without a TTL (the default) no
# finalizer is needed: the controller is the only deleter, and deletes recorded Jobs only.
FINALIZER: Final = f"{QFORGE_PREFIX}/record-outcome"

JOB_NAME_PREFIX: Final = "qf-"
_MAX_NAME = 63
_HASH_LEN = 10

# --- syntax checks ------------------------------------------------------------------

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_HASHED_TAIL = re.compile(rf"-[0-9a-f]{{{_HASH_LEN}}}\Z")


def is_dns1123_label(value: str) -> bool:
    """True when `value` is a valid DNS-1123 label (Kubernetes object names of Jobs)."""
    return len(value) <= _MAX_NAME and _DNS1123_LABEL.fullmatch(value) is not None


def is_release_name(value: str) -> bool:
    """True when `value` can name a release: a DNS-1123 label of at most 53 characters
    (Helm's own limit), so that it is a label value and prefixes the Lease's name."""
    return len(value) <= 53 and _DNS1123_LABEL.fullmatch(value) is not None


def is_reserved_label_key(key: str) -> bool:
    """True when `key` lies in a domain users may not label into (qforge's, Kubernetes')."""
    prefix, slash, _ = key.rpartition("/")
    if not slash:
        return False
    return any(prefix == d or prefix.endswith("." + d) for d in RESERVED_LABEL_DOMAINS)


def label_value_or_none(value: str) -> str | None:
    """`value` if it can be a label value, else None (keep it as an annotation only)."""
    return value if is_label_value(value) else None


# --- names --------------------------------------------------------------------------


def _digest(job_id: str, attempt: int) -> str:
    material = job_id if attempt == 1 else f"{job_id}\x00attempt={attempt}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:_HASH_LEN]


def _sanitize(value: str) -> str:
    """Lower-case, map everything outside ``[a-z0-9-]`` to ``-``, collapse runs."""
    out = re.sub(r"[^a-z0-9-]+", "-", value.lower())
    return re.sub(r"-{2,}", "-", out).strip("-")


def job_name(job_id: str, attempt: int = 1) -> str:
    """The batch/v1 Job name for a job id (and attempt): a DNS-1123 label, ≤ 63 chars.

    Deterministic; ``qf-<job id>`` whenever the id allows it, otherwise a readable
    prefix of the id plus a hash of the exact id (see the module docstring).
    """
    if not job_id:
        raise ValueError("job id is empty")
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    plain = JOB_NAME_PREFIX + job_id
    if attempt == 1 and is_dns1123_label(plain) and _HASHED_TAIL.search(plain) is None:
        return plain
    return JOB_NAME_PREFIX + _hashed(job_id, attempt, _MAX_NAME - len(JOB_NAME_PREFIX))


def _hashed(job_id: str, attempt: int, size: int) -> str:
    """``<sanitized id, truncated>-<digest>`` in at most `size` characters.

    Starts with a letter or digit and ends with the digest, so it is both a DNS-1123
    label and a label value.
    """
    digest = _digest(job_id, attempt)
    body = _sanitize(job_id)[: size - 1 - len(digest)].rstrip("-")
    return f"{body}-{digest}" if body else digest


def job_id_label_value(job_id: str) -> str:
    """The value of the ``qforge.io/job-id`` label for a job id.

    The id itself whenever it is a valid label value (every id the store generates).
    Ids the label syntax cannot hold (ending in ``_`` or ``-``), and ids that end like a
    hashed value, get a hashed form (readable prefix + digest of the exact id), so two
    ids never share a label value; the exact id is always in the ``qforge.io/job-id``
    annotation.
    """
    if not job_id:
        raise ValueError("job id is empty")
    if is_label_value(job_id) and _HASHED_TAIL.search(job_id) is None:
        return job_id
    return _hashed(job_id, 1, 63)


def job_id_from_metadata(metadata: Mapping[str, Any]) -> str | None:
    """The job id recorded on an object's metadata (annotation first, then label)."""
    annotations = metadata.get("annotations") or {}
    labels = metadata.get("labels") or {}
    value = annotations.get(ANNOTATION_JOB_ID) or labels.get(LABEL_JOB_ID)
    return str(value) if value else None


# --- labels and selectors ------------------------------------------------------------

RUNNER_SELECTOR: Final[Mapping[str, str]] = {
    LABEL_NAME: APP_NAME,
    LABEL_COMPONENT: COMPONENT_RUNNER,
    LABEL_MANAGED_BY: MANAGED_BY,
}


def base_labels(job_id: str, release: str | None = None) -> dict[str, str]:
    """The labels every runner Job and pod carries (ours; users may not override them),
    with the release's instance label when a release is given."""
    labels = dict(RUNNER_SELECTOR)
    if release is not None:
        labels[LABEL_INSTANCE] = release
    labels[LABEL_JOB_ID] = job_id_label_value(job_id)
    return labels


def selector(job_id: str | None = None, release: str | None = None) -> str:
    """A label selector string for qforge runner Jobs (and their pods).

    Without an id: every runner Job (of one release, when given); with one: that job's.
    """
    labels: dict[str, str] = dict(RUNNER_SELECTOR)
    if release is not None:
        labels[LABEL_INSTANCE] = release
    if job_id is not None:
        labels[LABEL_JOB_ID] = job_id_label_value(job_id)
    return ",".join(f"{k}={v}" for k, v in labels.items())


def lease_name(release: str) -> str:
    """The controller Lease of a release: one leader per release, not per namespace."""
    return f"{release}-controller"
