"""The operations every door offers, as a protocol: `JobManager` on a store mounted
here, `qforge.client.remote.RemoteManager` through a server. The command line and the
Python client are written against this, so a command behaves the same through either."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal, Protocol

from qforge.record import Status
from qforge.service.models import (
    CancelResult,
    Deleted,
    JobView,
    Overview,
    Progress,
    ResultView,
    RetryResult,
    SubmitOptions,
    SubmitResult,
)

if TYPE_CHECKING:  # the readers are for `submit` alone: `qforge worker` starts without them
    from qforge.inputs import BadRecord, ReadMolecule


class Manager(Protocol):
    def records(self, status: Status | None = None, group: str | None = None,
                warn: Callable[[str], None] = ...) -> list[dict[str, Any]]: ...

    def overview(self, group: str | None = None, *, owners: bool = False) -> Overview: ...

    def show(self, job_id: str) -> JobView: ...

    def result(self, job_id: str, fmt: Literal["json", "xyz", "qcschema"]) -> ResultView: ...

    def export(self, fmt: Literal["csv", "jsonl", "sdf", "xyz"], status: Status | None = None,
               group: str | None = None, warn: Callable[[str], None] = ...,
               *, per_molecule: bool = False) -> tuple[int, Iterator[str]]: ...

    def progress(self, job_ids: list[str], group: str | None) -> Progress: ...

    def follow(self, job_ids: list[str], group: str | None,
               interval: float = 0.5) -> Iterator[Progress]: ...

    def submit(self, items: Iterable[ReadMolecule | BadRecord], options: SubmitOptions, *,
               tick: Callable[[], None] = ...,
               progress: Callable[[int], None] = ...) -> SubmitResult: ...

    def cancel(self, job_ids: list[str], group: str | None) -> CancelResult: ...

    def delete(self, job_ids: list[str]) -> Deleted: ...

    def retry(self, job_ids: list[str], group: str | None, *, error_type: str | None = None,
              include_cancelled: bool = False) -> RetryResult: ...
