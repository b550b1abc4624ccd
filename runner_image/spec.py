"""The job spec: what to compute for one molecule, validated before anything runs."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    StringConstraints,
    field_validator,
    model_validator,
)

from qforge_runner.elements import ATOMIC_NUMBER
from qforge_runner.molecule import Molecule, parse_molecule, parse_qcschema_molecule


class Method(StrEnum):
    gfn2 = "gfn2"
    gfn1 = "gfn1"
    gfn0 = "gfn0"
    gfnff = "gfnff"


class Task(StrEnum):
    opt = "opt"  # geometry optimisation
    sp = "sp"  # single point
    hess = "hess"  # numerical Hessian (frequencies) at the input geometry
    ohess = "ohess"  # optimisation, then the Hessian at the optimised geometry


class OptLevel(StrEnum):
    """xtb's optimisation levels (``xtb --opt LEVEL``), loosest to tightest."""

    crude = "crude"
    sloppy = "sloppy"
    loose = "loose"
    lax = "lax"
    normal = "normal"
    tight = "tight"
    vtight = "vtight"
    extreme = "extreme"


# The ALPB solvents of xtb 6.5 (``xtb --help``, option --alpb), as xtb spells them.
ALPB_SOLVENTS: Final[frozenset[str]] = frozenset({
    "acetone", "acetonitrile", "aniline", "benzaldehyde", "benzene", "ch2cl2", "chcl3",
    "cs2", "dioxane", "dmf", "dmso", "ether", "ethylacetate", "furane", "hexandecane",
    "hexane", "methanol", "nitromethane", "octanol", "woctanol", "phenol", "toluene",
    "thf", "water",
})  # fmt: skip
_COMMON_SOLVENTS: Final = ("water", "methanol", "acetonitrile", "dmso", "thf", "toluene")

# How each method is called in print (QCSchema model.method, xtb's own banner).
METHOD_NAMES: Final[Mapping[Method, str]] = {
    Method.gfn2: "GFN2-xTB",
    Method.gfn1: "GFN1-xTB",
    Method.gfn0: "GFN0-xTB",
    Method.gfnff: "GFN-FF",
}
# The heaviest element each method is parametrised for: H-Rn for the xTB methods,
# H-Lr for GFN-FF.
MAX_ATOMIC_NUMBER: Final[Mapping[Method, int]] = {
    Method.gfn2: 86,
    Method.gfn1: 86,
    Method.gfn0: 86,
    Method.gfnff: 103,
}

# Length limits of the strings a job carries beside its chemistry. The runner holds them
# as plain strings: their Kubernetes syntax (a job's name and labels go onto its
# Kubernetes Job, its memory is the pod's request) is qforge's to check
# (qforge.kubesyntax, qforge.spec.JobSpec).
MAX_NAME: Final = 63  # a Kubernetes label value
MAX_LABEL_KEY: Final = 253 + 1 + 63  # [DNS subdomain prefix/]name
MAX_LABEL_VALUE: Final = 63
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_KEY)]
LabelValue = Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE)]


def electron_problem(molecule: Molecule, charge: int, uhf: int) -> str | None:
    """Why `charge` and `uhf` cannot describe `molecule`, in a sentence; None when they can.

    electrons = sum of atomic numbers - charge; it must be positive, at least uhf, and
    have the parity of uhf (the unpaired electrons), as xtb assumes. The same holds for
    GFN-FF: a force field ignores the spin, but the molecule must still exist.
    """
    formula = molecule.formula
    electrons = molecule.nuclear_charge_sum() - charge
    if electrons < 0:
        return (f"charge {charge} would remove more electrons than {formula} has "
                f"({molecule.nuclear_charge_sum()})")
    if electrons == 0:
        return f"charge {charge} leaves no electrons for {formula}: xtb has nothing to compute"
    if uhf > electrons:
        return (f"uhf {uhf} asks for more unpaired electrons than the {electrons} "
                f"that charge {charge} leaves for {formula}")
    if (electrons - uhf) % 2:
        parity = "odd" if electrons % 2 else "even"
        fix = f"uhf={1 - uhf}" if uhf <= 1 else f"an {parity} uhf such as uhf={uhf - 1}"
        return (f"charge {charge} with uhf {uhf} leaves {electrons} electrons for {formula}: "
                f"an {parity} count needs {fix} (or another charge)")
    return None


DEFAULT_TEMPERATURE: Final = 298.15  # K
XCONTROL_FILE: Final = "qforge.xcontrol"  # written beside the input in the scratch folder


class JobSpec(BaseModel):
    """One calculation: a molecule and how to compute it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    molecule: Molecule
    method: Method = Method.gfn2
    task: Task = Task.opt
    opt_level: OptLevel = OptLevel.normal
    charge: int = Field(0, ge=-1000, le=1000)
    uhf: int = Field(0, ge=0, le=1000, description="number of unpaired electrons")
    solvent: str | None = Field(None, description="ALPB solvent, e.g. water")
    timeout: float | None = Field(None, gt=0, allow_inf_nan=False, description="seconds")
    # Cores for xtb (OMP_NUM_THREADS). None: the executor's default — 1 for the local
    # worker, RUNNER_CPU for a runner pod.
    cpu: int | None = Field(None, ge=1, le=64)
    memory: str | None = Field(None, description="e.g. 512Mi or 2Gi (a Kubernetes quantity)")
    priority: int = Field(0, ge=-1000, le=1000)
    # K; the thermochemistry of hess and ohess (xtb's $thermo temp), unused otherwise.
    # Left out of a record at its default, so records (and the inputs' hashes) of jobs
    # that do not set it stay as they were before it existed, and older runners read them.
    temperature: float = Field(DEFAULT_TEMPERATURE, ge=1.0, le=10000.0, allow_inf_nan=False,
                               description="K, for the thermochemistry of hess and ohess",
                               exclude_if=lambda t: t == DEFAULT_TEMPERATURE)
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME,
                             description="a Kubernetes label value, ≤63 characters")
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    # How the SCC is run, and where the run starts (docs/retry.md: the retry ladder sets
    # these on a new attempt; a user may set the first two at submission). Each is left
    # out of a record at its default, so records of jobs that do not set them stay as
    # they were before they existed (byte for byte), and older runners read them.
    etemp: float | None = Field(None, gt=0, le=50000.0, allow_inf_nan=False,
                                description="K, xtb's electronic temperature (--etemp)",
                                exclude_if=lambda t: t is None)
    scc_iterations: int | None = Field(None, ge=1, le=10000,
                                       description="xtb's SCC iterations (--iterations)",
                                       exclude_if=lambda n: n is None)
    # A GFN-FF optimisation first; the calculation starts from its geometry.
    preopt_gfnff: bool = Field(False, exclude_if=lambda b: not b)
    # The geometry the calculation starts from instead of the molecule's own (the same
    # atoms in the same order): a displaced start after a saddle point.
    start_geometry: Molecule | None = Field(None, exclude_if=lambda m: m is None)
    # Failed runs are retried by the ladder of qforge.scheduling.ladder (docs/retry.md).
    auto_retry: bool = Field(False, exclude_if=lambda b: not b)

    @property
    def threads(self) -> int:
        """OpenMP threads for xtb: the job's cores, 1 when it asked for none."""
        return self.cpu or 1

    @field_validator("molecule", mode="before")
    @classmethod
    def _molecule_from_text(cls, value: Any) -> Any:
        """Also accept XYZ / QCSchema text, or a QCSchema molecule object."""
        if isinstance(value, str):
            return parse_molecule(value)
        if isinstance(value, Mapping) and "schema_name" in value:
            return parse_qcschema_molecule(value)
        return value

    @field_validator("solvent")
    @classmethod
    def _known_solvent(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.strip().lower()
        if name in ALPB_SOLVENTS:
            return name
        close = difflib.get_close_matches(name, sorted(ALPB_SOLVENTS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown solvent {value!r}: {hint}ALPB solvents include "
            f"{', '.join(_COMMON_SOLVENTS)} ({len(ALPB_SOLVENTS)} in all, see xtb --help)"
        )

    @model_validator(mode="wrap")
    @classmethod
    def _chemistry(cls, data: Any, handler: ModelWrapValidatorHandler[JobSpec]) -> JobSpec:
        """The method's elements and the electron count. An instance of this class (a
        record rebuilt around its spec) is returned as it is, as `Molecule._consistent`
        argues: frozen, it is what was validated when it was made. A JobSpec of another
        class (the runner's, where qforge's subclass is asked for) is validated again as
        this class from the values it was given (its molecule not parsed again)."""
        if isinstance(data, cls):
            return data
        if isinstance(data, JobSpec):
            data = {name: getattr(data, name) for name in data.model_fields_set}
        spec = handler(data)
        spec._check_chemistry()
        return spec

    def _check_chemistry(self) -> None:
        limit = MAX_ATOMIC_NUMBER[self.method]
        for i, sym in enumerate(self.molecule.symbols, start=1):
            if ATOMIC_NUMBER[sym] > limit:
                raise ValueError(
                    f"atom {i} ({sym}): {METHOD_NAMES[self.method]} has no parameters "
                    f"for elements beyond Z={limit}"
                )
        problem = electron_problem(self.molecule, self.charge, self.uhf)
        if problem:
            raise ValueError(problem)
        start = self.start_geometry
        if start is not None and start.symbols != self.molecule.symbols:
            raise ValueError("start_geometry must have the molecule's atoms in its order")

    @property
    def start(self) -> Molecule:
        """The geometry xtb starts from: `start_geometry`, else the molecule."""
        return self.start_geometry or self.molecule

    def preopt_args(self) -> list[str]:
        """xtb's flags for the GFN-FF pre-optimisation (`preopt_gfnff`)."""
        return ["--gfnff", "--opt", "normal", "--chrg", str(self.charge)]

    @property
    def electrons(self) -> int:
        return self.molecule.nuclear_charge_sum() - self.charge

    def xtb_args(self) -> list[str]:
        """xtb's command-line flags for this spec; the geometry file goes before them.

        ``xtb input.xyz --gfn 2 --opt normal --chrg 0 --uhf 0 --alpb water --json``
        """
        args = ["--gfnff"] if self.method is Method.gfnff else ["--gfn", self.method.value[3:]]
        if self.task is Task.sp:
            args.append("--sp")
        elif self.task is Task.hess:
            args.append("--hess")
        else:  # opt, ohess
            args += [f"--{self.task.value}", self.opt_level.value]
        args += ["--chrg", str(self.charge), "--uhf", str(self.uhf)]
        if self.etemp is not None:
            args += ["--etemp", f"{self.etemp:g}"]
        if self.scc_iterations is not None:
            args += ["--iterations", str(self.scc_iterations)]
        if self.solvent:
            args += ["--alpb", self.solvent]
        if self.xcontrol() is not None:
            args += ["--input", XCONTROL_FILE]
        args.append("--json")
        return args

    def xcontrol(self) -> str | None:
        """xtb's xcontrol input (the file XCONTROL_FILE, named by ``--input``), or None.

        hess and ohess: the thermochemistry's temperature, ``$thermo temp=...`` (xtb has
        no command-line flag for it; ``--etemp`` is the electronic temperature of the
        SCC, a different thing)."""
        if self.task not in (Task.hess, Task.ohess):
            return None
        return f"$thermo\n   temp={self.temperature!r}\n$end\n"
