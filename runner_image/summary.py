"""The result summary a job record keeps (`JobRecord.result` in metadata.json).

`JobResult.summary()` makes it: the few numbers of a finished calculation, no per-atom
arrays. The field order is the key order of metadata.json. Fields added in later releases
(`topology_changed`, `thermochemistry`, `QualitySummary.topology_changed`) have defaults:
a record written before them reads, and is written back byte for byte — a key absent on
disk stays absent (it is not in the model's `model_fields_set`), a key present stays.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from qforge_runner.spec import Method, Task
from qforge_runner.thermo import Thermochemistry


class _AsWritten(BaseModel):
    """A model that writes only the keys it was given (or built with)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        given = self.model_fields_set
        return {key: value for key, value in data.items() if key in given}


class QualitySummary(_AsWritten):
    """The quality assessment in a summary (`qforge_runner.result.Quality` without its
    field descriptions' detail; see `qforge_runner.quality`)."""

    ok: bool
    converged: bool
    gap_ok: bool
    imaginary_frequencies: int
    from_text_output: bool
    topology_changed: bool = False  # not in records written before it existed
    warnings: tuple[str, ...]


class ResultSummary(_AsWritten):
    """A finished calculation's numbers. Units: energy in Eh, the gap in eV, the dipole's
    magnitude in debye, the wall time in seconds (xtb's run)."""

    energy: float
    gap: float | None
    converged: bool
    formula: str | None
    method: Method
    task: Task
    wall_time: float
    xtb_version: str | None
    dipole_debye: float | None
    # opt/ohess: the final geometry's connectivity differs from the input's (None: no
    # optimisation); not in records written before it existed, nor is the next
    topology_changed: bool | None = None
    thermochemistry: Thermochemistry | None = None
    quality: QualitySummary
