"""What the service layer answers, as it crosses the network: frozen pydantic models,
the same whichever door asked."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from qforge.record import Status
from qforge_runner.spec import Method, Task

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class SubmitOptions(BaseModel):
    """A submission's options, applied to every molecule (`qforge submit`'s flags)."""

    model_config = _FROZEN

    group: str | None = None  # default: the first input's name and the time
    first_input: str = "stdin"  # names the default group
    name: str | None = None
    charge: int | None = None
    uhf: int | None = None
    force: bool = False
    skip_invalid: bool = False
    # a follow-up step for each job (`all`) or each molecule's lowest-energy job
    # (`best`), started from its optimised geometry once its parents end
    # (docs/ensembles.md); its method: `then_method`, else the parent's
    then: Task | None = None
    then_method: Method | None = None
    then_for: Literal["best", "all"] = "best"
    # the spec's per-job options (method, task, opt_level, solvent, timeout, cpu, memory,
    # priority, labels), validated by JobSpec before any molecule is read
    spec: dict[str, Any] = Field(default_factory=dict)


class Submitted(BaseModel):
    """One molecule's outcome."""

    model_config = _FROZEN

    job_id: str
    name: str | None
    status: Status
    duplicate_of: str | None = None
    molecule: str | None = None  # its molecule key (JobRecord.molecule)


class SubmitResult(BaseModel):
    model_config = _FROZEN

    group: str
    jobs: list[Submitted]
    # how many molecules the jobs are conformers of, when the submission asked for
    # conformer ensembles (`--conformers`); None otherwise
    molecules: int | None = None
    skipped: list[str] = Field(default_factory=list)  # one line per invalid molecule
    # the first molecule's formula, method and task (the one-molecule summary line)
    first_what: str = ""
    # the follow-up steps (`then`): jobs waiting for these jobs (docs/ensembles.md)
    follow_ups: list[Submitted] = Field(default_factory=list)


class MoleculeCounts(BaseModel):
    """A group of conformer ensembles counted by molecule (service.ensemble)."""

    model_config = _FROZEN

    complete: int  # molecules whose conformer jobs are all finished
    total: int  # molecules
    jobs_finished: int  # conformer jobs finished
    jobs: int  # conformer jobs

    @classmethod
    def of(cls, counts: tuple[int, int, int, int]) -> MoleculeCounts:
        return cls(complete=counts[0], total=counts[1], jobs_finished=counts[2],
                   jobs=counts[3])

    def line(self) -> str:
        from qforge.service.ensemble import ensemble_line

        return ensemble_line((self.complete, self.total, self.jobs_finished, self.jobs))


class Overview(BaseModel):
    """Counts per status, and the rate over the window (or the group's age, if younger)."""

    model_config = _FROZEN

    group: str | None
    counts: dict[Status, int]
    finished_in_window: int
    window_minutes: float  # the window the rate is measured over
    # owner -> (running, queued), when asked for (`qforge status --owners`)
    owners: dict[str, tuple[int, int]] | None = None
    # of the QUEUED ones, those waiting for other jobs (follow-up steps, docs/ensembles.md)
    waiting: int = 0
    # by molecule, for a group of conformer ensembles (None otherwise)
    molecules: MoleculeCounts | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return sum(n for s, n in self.counts.items() if s.terminal)

    @property
    def rate_per_minute(self) -> float:
        return self.finished_in_window / self.window_minutes if self.window_minutes else 0.0

    @property
    def eta_seconds(self) -> float | None:
        left = self.total - self.finished
        if left == 0:
            return 0.0
        rate = self.rate_per_minute
        return None if rate <= 0 else 60.0 * left / rate

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "total": self.total,
            "counts": {s.value: n for s, n in self.counts.items()},
            "waiting": self.waiting,
            "finished": self.finished,
            "window_minutes": self.window_minutes,
            "finished_in_window": self.finished_in_window,
            "rate_per_minute": round(self.rate_per_minute, 3),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
            **({} if self.owners is None else {"owners": {
                o: {"running": r, "queued": q} for o, (r, q) in self.owners.items()}}),
            **({} if self.molecules is None else {"molecules": self.molecules.model_dump()}),
        }


class JobView(BaseModel):
    """`qforge show`: the record, its groups, why it waits, where it lives."""

    model_config = _FROZEN

    record: dict[str, Any]  # as metadata.json holds it
    groups: list[str]
    waiting: list[str]
    folder: str


class Progress(BaseModel):
    """A followed set of jobs (a group, or ids), as `qforge wait` shows it."""

    model_config = _FROZEN

    total: int
    counts: dict[Status, int]
    done: bool
    failed: list[str] = Field(default_factory=list)  # not COMPLETED, once done
    failed_status: dict[str, Status] = Field(default_factory=dict)

    def summary(self) -> str:
        return ", ".join(f"{n} {s.value}" for s, n in self.counts.items() if n)

    @property
    def finished(self) -> int:
        return sum(n for s, n in self.counts.items() if s.terminal)


class CancelResult(BaseModel):
    model_config = _FROZEN

    group: str | None = None
    requested: list[tuple[str, Status]] = Field(default_factory=list)
    already: list[tuple[str, Status]] = Field(default_factory=list)
    shared: int = 0  # group cancel: kept, since another group counts on them
    missing: list[str] = Field(default_factory=list)  # ids not found
    warnings: list[str] = Field(default_factory=list)


class Deleted(BaseModel):
    model_config = _FROZEN

    jobs: list[tuple[str, Status]]


class ResultView(BaseModel):
    """`qforge result`: the text to print, or a one-line message and an exit code."""

    model_config = _FROZEN

    exit_code: int
    format: Literal["json", "xyz", "qcschema"]
    body: str | None = None  # json text or xyz text
    message: str | None = None  # on stderr


class Structure(BaseModel):
    """A molecule for the page's viewer: element symbols and coordinates in Å."""

    model_config = _FROZEN

    symbols: list[str]
    geometry: list[tuple[float, float, float]]


class JobPage(BaseModel):
    """What the job page shows: `qforge show`, whether the caller may cancel it, the
    tail of xtb's output, and the molecule in and out."""

    model_config = _FROZEN

    view: JobView
    can_cancel: bool
    log_name: str | None = None
    log_tail: str = ""
    input: Structure
    optimised: Structure | None = None


class RetryResult(BaseModel):
    """`qforge retry`: the jobs queued again (with the number of their new attempt) and
    the ones left as they were, each with the reason."""

    model_config = _FROZEN

    group: str | None = None
    retried: list[tuple[str, int]] = Field(default_factory=list)
    skipped: list[tuple[str, str]] = Field(default_factory=list)
