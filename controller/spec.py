"""The job spec as qforge accepts it: the runner's calculation spec plus the Kubernetes
syntax of its name, labels and memory (qforge.kubesyntax).

A job's name and labels are copied onto its Kubernetes Job and its memory is its pod's
request, so qforge refuses at submission what a cluster would refuse later; the runner
(`qforge_runner.spec.JobSpec`) only computes, and holds these as plain strings with
their length limits. Every spec qforge builds is one of these, and a record's spec reads
as one (`JobRecord.spec`); a runner's spec handed to it is checked again as one
(`qforge_runner.spec.JobSpec._chemistry`). The JSON is the runner's, field for field.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from qforge.kubesyntax import check_labels, check_memory, check_name, memory_bytes
from qforge_runner import spec as runner


class JobSpec(runner.JobSpec):
    """One calculation as qforge accepts it (see the module's docstring)."""

    # The runner's fields of the same names and places, with the Kubernetes syntax
    # checked below (stricter than the runner's length limits).
    memory: str | None = Field(None, description="Kubernetes quantity, e.g. 512Mi or 2Gi")
    name: str | None = Field(None, description="a Kubernetes label value, ≤63 characters")
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("memory")
    @classmethod
    def _memory_quantity(cls, value: str | None) -> str | None:
        return None if value is None else check_memory(value)

    @field_validator("name")
    @classmethod
    def _name_is_label_value(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)

    @field_validator("labels")
    @classmethod
    def _kubernetes_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        return check_labels(labels)

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else memory_bytes(self.memory)
