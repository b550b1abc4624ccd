"""What a run produced: the result, or a typed error; and its QCSchema export.

`RunReport` is exactly what ``result.json`` holds. Units: energies in Eh, the HOMO-LUMO
gap in eV, the dipole in atomic units (e·bohr, as xtb and QCSchema give it),
frequencies in cm⁻¹ (imaginary ones as negative numbers), geometries in Ångström.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from qforge_runner import version
from qforge_runner.molecule import Molecule
from qforge_runner.spec import METHOD_NAMES, JobSpec, Method, Task
from qforge_runner.summary import QualitySummary, ResultSummary
from qforge_runner.thermo import Thermochemistry

DEBYE_PER_AU: Final = 2.541746473  # 1 e·bohr in debye


class ErrorType(StrEnum):
    """Why a job failed; the type says whether running it again can help."""

    input_error = "input_error"  # fix the input; a retry fails the same way
    convergence_error = "convergence_error"  # SCC or geometry did not converge
    timeout = "timeout"  # the job's time ran out
    resource_error = "resource_error"  # out of memory, evicted
    xtb_error = "xtb_error"  # xtb stopped with an error of its own
    infrastructure_error = "infrastructure_error"  # no xtb, unwritable folders, a crash of ours
    cancelled = "cancelled"  # a person (or a shutdown) stopped it


class JobError(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ErrorType
    message: str = Field(description="one line a chemist can act on")
    detail: str | None = Field(None, description="e.g. the tail of xtb's output")


class Quality(BaseModel):
    """A quality assessment of a finished calculation (see `qforge_runner.quality`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    converged: bool
    gap_ok: bool
    imaginary_frequencies: int = 0
    from_text_output: bool = Field(
        False, description="xtbout.json was missing or unreadable: values from xtb's text output"
    )
    warnings: tuple[str, ...] = ()
    topology_changed: bool = Field(
        False, description="the optimisation changed which atoms are bonded (a proton moved, "
        "a ring opened): the final structure is another molecule than the input")
    ok: bool


class JobResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    energy: float = Field(allow_inf_nan=False, description="total energy, Eh")
    gap: float | None = Field(description="HOMO-LUMO gap, eV (None for GFN-FF)")
    dipole: tuple[float, float, float] | None = Field(
        description="dipole moment, atomic units (e·bohr); None for GFN-FF"
    )
    partial_charges: tuple[float, ...] | None = Field(description="atomic partial charges, e")
    geometry: Molecule | None = Field(description="optimised geometry (opt, ohess), Å")
    frequencies: tuple[float, ...] | None = Field(
        description="vibrational frequencies (hess, ohess), cm⁻¹, imaginary ones negative; "
        "translations and rotations left out (3N-6, or 3N-5 for a linear molecule)"
    )
    converged: bool
    xtb_version: str | None
    method: Method
    task: Task
    wall_time: float = Field(ge=0, description="seconds xtb ran")
    quality: Quality
    formula: str | None = None
    thermochemistry: Thermochemistry | None = Field(
        None, description="RRHO thermochemistry (hess, ohess), from xtb's text output")
    topology_changed: bool | None = Field(
        None, description="opt/ohess: the final geometry's connectivity differs from the "
        "input's (None: no optimisation)")

    @property
    def dipole_debye(self) -> float | None:
        """The dipole's magnitude in debye."""
        if self.dipole is None:
            return None
        return math.hypot(*self.dipole) * DEBYE_PER_AU

    def summary(self) -> ResultSummary:
        """The few numbers metadata.json keeps (no per-atom arrays)."""
        dipole = self.dipole_debye
        q = self.quality
        return ResultSummary(
            energy=self.energy, gap=self.gap, converged=self.converged, formula=self.formula,
            method=self.method, task=self.task, wall_time=round(self.wall_time, 3),
            xtb_version=self.xtb_version,
            dipole_debye=None if dipole is None else round(dipole, 4),
            topology_changed=self.topology_changed, thermochemistry=self.thermochemistry,
            quality=QualitySummary(
                ok=q.ok, converged=q.converged, gap_ok=q.gap_ok,
                imaginary_frequencies=q.imaginary_frequencies,
                from_text_output=q.from_text_output, topology_changed=q.topology_changed,
                warnings=q.warnings))


class RunReport(BaseModel):
    """What ``result.json`` holds: one run of one job, a result or an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    success: bool
    result: JobResult | None = None
    error: JobError | None = None
    job_id: str | None = None
    started_at: str = Field(description="ISO-8601 UTC")
    finished_at: str = Field(description="ISO-8601 UTC")
    # Where it ran, on Kubernetes: the runner pod's node and name (its NODE_NAME and
    # POD_NAME, from the downward API). None elsewhere, and in reports written before.
    node: str | None = None
    pod: str | None = None

    @model_validator(mode="after")
    def _result_or_error(self) -> RunReport:
        if self.success and (self.result is None or self.error is not None):
            raise ValueError("a successful report has a result and no error")
        if not self.success and (self.error is None or self.result is not None):
            raise ValueError("a failed report has an error and no result")
        return self


# --------------------------------------------------------------------------- QCSchema

_THERMO_UNITS: Final = {"temperature": "_k", "zpe": "_eh", "enthalpy": "_eh", "ts": "_eh",
                        "g_rrho": "_eh", "free_energy": "_eh"}

# Our error types in QCEngine's vocabulary (random_error: running again may help).
_QCENGINE_ERROR: Final[dict[ErrorType, str]] = {
    ErrorType.input_error: "input_error",
    ErrorType.convergence_error: "convergence_error",
    ErrorType.timeout: "resource_error",
    ErrorType.resource_error: "resource_error",
    ErrorType.xtb_error: "unknown_error",
    ErrorType.infrastructure_error: "random_error",
    ErrorType.cancelled: "random_error",
}


Connectivity = list[tuple[int, int, float]]  # QCSchema's: 0-based atoms, bond order


def _qcschema_molecule(molecule: Molecule, spec: JobSpec,
                       connectivity: Connectivity | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "schema_name": "qcschema_molecule",
        "schema_version": 2,
        "name": spec.name or molecule.formula,
        "symbols": list(molecule.symbols),
        "geometry": molecule.geometry_bohr(),
        "molecular_charge": float(spec.charge),
        "molecular_multiplicity": spec.uhf + 1,
        "fix_com": True,
        "fix_orientation": True,
    }
    if connectivity:
        out["connectivity"] = [[i, j, float(order)] for i, j, order in connectivity]
    return out


def _keywords(spec: JobSpec) -> dict[str, Any]:
    keywords: dict[str, Any] = {"task": spec.task.value}
    if spec.task in (Task.opt, Task.ohess):
        keywords["opt_level"] = spec.opt_level.value
    if spec.solvent:
        keywords["alpb_solvent"] = spec.solvent
    # what the retry ladder (or the user) changed about the SCC and the start, when set
    if spec.etemp is not None:
        keywords["etemp"] = spec.etemp
    if spec.scc_iterations is not None:
        keywords["scc_iterations"] = spec.scc_iterations
    if spec.preopt_gfnff:
        keywords["preopt_gfnff"] = True
    return keywords


def _provenance() -> dict[str, Any]:
    return {"creator": "qforge", "version": version(), "routine": "qforge_runner.harness.run_job"}


def to_qcschema(spec: JobSpec, report: RunReport,
                connectivity: Connectivity | None = None) -> dict[str, Any]:
    """The run as QCSchema: an AtomicResult on success, a FailedOperation otherwise.

    The result is the single point at the final geometry (driver "energy"): for opt/ohess
    the molecule is the optimised one. Frequencies (hess, ohess), the thermochemistry,
    the gap, partial charges and the quality assessment are in ``extras["qforge"]``.
    `connectivity` (the job's bond table, when it has one) goes into the molecule.
    """
    model = {"method": METHOD_NAMES[spec.method], "basis": None}
    result = report.result
    if not report.success or result is None:
        error = report.error or JobError(
            type=ErrorType.infrastructure_error, message="the run reported no result"
        )
        return {
            "id": report.job_id,
            "success": False,
            "input_data": {
                "schema_name": "qcschema_input",
                "schema_version": 1,
                "molecule": _qcschema_molecule(spec.molecule, spec, connectivity),
                "driver": "energy",
                "model": model,
                "keywords": _keywords(spec),
                "provenance": _provenance(),
            },
            "error": {
                "error_type": _QCENGINE_ERROR[error.type],
                "error_message": error.message,
                "extras": {"qforge_error_type": error.type.value, "detail": error.detail},
            },
            "extras": {"qforge": {"job_id": report.job_id, "started_at": report.started_at,
                                  "finished_at": report.finished_at}},
        }

    molecule = result.geometry or spec.molecule
    properties: dict[str, Any] = {
        "return_energy": result.energy,
        "calcinfo_natom": molecule.natoms,
    }
    if result.dipole is not None:
        properties["scf_dipole_moment"] = list(result.dipole)
    return {
        "schema_name": "qcschema_output",
        "schema_version": 1,
        "id": report.job_id,
        "molecule": _qcschema_molecule(molecule, spec, connectivity),
        "driver": "energy",
        "model": model,
        "keywords": _keywords(spec),
        "provenance": _provenance(),
        "properties": properties,
        "return_result": result.energy,
        "success": True,
        "extras": {
            "qforge": {
                "job_id": report.job_id,
                "xtb_version": result.xtb_version,
                "homo_lumo_gap_ev": result.gap,
                "partial_charges": None if result.partial_charges is None
                else list(result.partial_charges),
                "frequencies_cm-1": None if result.frequencies is None
                else list(result.frequencies),
                "converged": result.converged,
                "topology_changed": result.topology_changed,
                "thermochemistry": None if result.thermochemistry is None
                else {f"{key}{_THERMO_UNITS[key]}": value for key, value
                      in result.thermochemistry.model_dump(mode="json").items()},
                "wall_time": result.wall_time,
                "quality": result.quality.model_dump(mode="json"),
                "started_at": report.started_at,
                "finished_at": report.finished_at,
            }
        },
    }
