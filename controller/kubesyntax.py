"""Kubernetes syntax qforge holds a job to: label keys and values (a job's name and labels
are copied onto its Kubernetes Job, a group's name is a label value) and memory quantities
(a job's memory is its pod's request). The one check of it, for the spec as qforge
accepts it (`qforge.spec.JobSpec`), the Kubernetes builders (`qforge.k8s`) and the store's
group names. Pure: no Kubernetes client, nothing of qforge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

# Whole strings only (fullmatch: a trailing newline is not a label).
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Memory as a Kubernetes quantity: 512Mi, 2Gi, 1.5G, 1e9 (bytes).
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)([KMGTPE]i|[kMGTPE]|[eE]\d+)?$")
_SUFFIX: Final[Mapping[str, int]] = {
    "": 1,
    **{s + "i": 1024 ** (k + 1) for k, s in enumerate("KMGTPE")},
    **{s: 1000 ** (k + 1) for k, s in enumerate("kMGTPE")},
}
MIN_MEMORY: Final = 64 * 1024**2  # below this xtb cannot even start


def is_label_value(value: str) -> bool:
    """A valid Kubernetes label value: empty, or ≤63 of [A-Za-z0-9-_.], alphanumeric ends."""
    return value == "" or _LABEL_NAME.fullmatch(value) is not None


def is_label_key(key: str) -> bool:
    """A valid Kubernetes label key: ``[prefix/]name``, prefix a DNS subdomain ≤253."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (0 < len(prefix) <= 253 and _DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return _LABEL_NAME.fullmatch(name) is not None


def memory_bytes(quantity: str) -> int:
    """Bytes in a Kubernetes memory quantity (``"512Mi"`` → 536870912); ValueError if bad."""
    match = _QUANTITY.match(quantity.strip())
    if not match:
        raise ValueError(f"memory {quantity!r} is not a Kubernetes quantity like 512Mi or 2Gi")
    number, suffix = match.group(1), match.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return int(float(number) * 10 ** int(suffix[1:]))
    return int(float(number) * _SUFFIX[suffix])


# ------------------------------------------------ a job's name, labels and memory


def check_memory(value: str) -> str:
    """A job's memory, stripped: a Kubernetes quantity of at least MIN_MEMORY bytes
    (ValueError: a sentence saying what is wrong)."""
    value = value.strip()
    size = memory_bytes(value)
    if size < MIN_MEMORY:
        raise ValueError(
            f"memory {value!r} is only {size} bytes; xtb needs at least 64Mi "
            "(write units: 512Mi, 2Gi)"
        )
    return value


def check_name(value: str) -> str:
    """A job's name: a non-empty Kubernetes label value."""
    if not value or not is_label_value(value):
        raise ValueError(
            f"name {value!r} must be 1-63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return value


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """A job's labels: Kubernetes label keys and values."""
    for key, value in labels.items():
        if not is_label_key(key):
            raise ValueError(
                f"label key {key!r} is not a valid Kubernetes label key "
                "([prefix/]name, name 1-63 of letters, digits, '-', '_', '.')"
            )
        if not is_label_value(value):
            raise ValueError(
                f"label {key}={value!r}: a value is at most 63 letters, digits, '-', "
                "'_' or '.', starting and ending with a letter or digit"
            )
    return labels
