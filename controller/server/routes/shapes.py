"""The shapes the routes accept: ids and group names as parameters (the patterns of
qforge.ids and qforge.store.groups, so that the description says what is accepted; a
name of that shape that names nothing is a 404) and the bodies of the changes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

API = "/api/v1"
JOB_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# letters, digits, '-', '_' and '.', no '..', a letter or digit at each end; at most 63
GROUP = r"^[A-Za-z0-9](?:(?:[-_]|\.[-_])*\.?[A-Za-z0-9])*$"
GroupQ = Annotated[str | None, Query(pattern=GROUP, max_length=63)]
IdsQ = Annotated[list[Annotated[str, StringConstraints(pattern=JOB_ID)]],
                 Query(min_length=1, max_length=10_000)]
JobId = Annotated[str, Path(pattern=JOB_ID)]
Group = Annotated[str, Path(pattern=GROUP, max_length=63)]


class CancelJobs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_ids: list[Annotated[str, StringConstraints(pattern=JOB_ID)]] = Field(
        min_length=1, max_length=100_000)


RetryErrorType = Literal["input_error", "convergence_error", "timeout", "resource_error",
                         "xtb_error", "infrastructure_error", "cancelled"]


class RetryJobs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_ids: list[Annotated[str, StringConstraints(pattern=JOB_ID)]] = Field(
        min_length=1, max_length=100_000)
    error_type: RetryErrorType | None = None
    include_cancelled: bool = False


class RetryGroup(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    group: Annotated[str, StringConstraints(pattern=GROUP, max_length=63)]
    error_type: RetryErrorType | None = None
    include_cancelled: bool = False


class CancelGroup(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    group: Annotated[str, StringConstraints(pattern=GROUP, max_length=63)]


class DeleteBody(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_ids: list[Annotated[str, StringConstraints(pattern=JOB_ID)]] = Field(
        min_length=1, max_length=100_000)
