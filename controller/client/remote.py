"""The service layer through a server: `RemoteManager` offers what `JobManager` offers
(qforge.service.door.Manager), over HTTP (httpx). A problem+json answer becomes the
exception the local store would have raised, so the command line prints the same line and
exits with the same code."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, NoReturn

import httpx

from qforge.auth.roles import Denied
from qforge.inputs import BadRecord, ReadMolecule
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
from qforge.service.problems import (
    InvalidMolecules,
    RateLimited,
    TooLarge,
    Unauthenticated,
    UsageError,
)
from qforge.service.wire import encode_bad, encode_molecule
from qforge.store.jobstore import CorruptRecord, JobNotFound, StoreError
from qforge_runner.errors import InputError

API = "/api/v1"
# Connecting must be quick; reading may wait long (a submission of 10^5 molecules is
# validated before the answer starts; an export streams for minutes).
TIMEOUT = httpx.Timeout(connect=10.0, read=3600.0, write=600.0, pool=60.0)
# An event stream sends a keep-alive every 15 s: a minute of silence is a lost server.
FOLLOW_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=60.0)


class ServerUnreachable(InputError):
    """The server did not answer (exit 2: the user's to fix, e.g. the URL)."""


def raise_problem(response: httpx.Response) -> NoReturn:
    """The exception a problem+json answer stands for."""
    try:
        body = json.loads(response.read())
    except ValueError:
        body = {}
    detail = str(body.get("detail") or f"the server answered {response.status_code}")
    code = response.status_code
    if code == 401:
        raise Unauthenticated(detail)
    if code == 403:
        raise Denied(detail)
    if code == 404:
        raise JobNotFound(detail)
    if code == 413:
        raise TooLarge(detail)
    if code == 429:
        raise RateLimited(detail, float(response.headers.get("Retry-After", "1")))
    if code == 422 and isinstance(body.get("errors"), list):
        raise _invalid(detail, [str(e) for e in body["errors"]])
    if code == 409 and body.get("exit_code") == 1:
        raise CorruptRecord(detail, "")
    if code == 409:
        raise StoreError(detail)
    if 400 <= code < 500:
        raise UsageError(detail)
    raise ServerUnreachable(f"the server failed: {detail}")


def _invalid(detail: str, lines: list[str]) -> InvalidMolecules:
    exc = InvalidMolecules(lines, len(lines))
    exc.args = (detail,)
    return exc


class RemoteManager:
    def __init__(self, url: str, token: str, *, client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self.client = client or httpx.Client(
            base_url=self.url, timeout=TIMEOUT, headers={
                "Authorization": f"Bearer {token}", "User-Agent": "qforge-cli"})

    # ----------------------------------------------------------- plumbing
    def _get(self, path: str, **params: Any) -> Any:
        return self._json("GET", path, params=params)

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = self.client.request(method, API + path, **kw)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot reach {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise_problem(response)
        return response.json()

    def _stream(self, path: str, params: dict[str, Any]) -> tuple[int, Iterator[str]]:
        request = self.client.build_request("GET", API + path, params=params)
        try:
            response = self.client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot reach {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise_problem(response)
        count = int(response.headers.get("X-Qforge-Count", "0"))

        def pieces() -> Iterator[str]:
            try:
                yield from response.iter_text()
            finally:
                response.close()

        return count, pieces()

    def whoami(self) -> dict[str, str]:
        data: dict[str, str] = self._get("/whoami")
        return data

    # -------------------------------------------------------------- reads
    def records(self, status: Status | None = None, group: str | None = None,
                warn: Callable[[str], None] = lambda line: None) -> list[dict[str, Any]]:
        _, pieces = self._stream("/jobs", _params(status=status, group=group))
        text = "".join(pieces)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def overview(self, group: str | None = None, *, owners: bool = False) -> Overview:
        data = (self._get("/status", **({"owners": "true"} if owners else {}))
                if group is None else self._get(f"/groups/{_seg(group)}"))
        by_owner = data.get("owners")
        return Overview(group=data["group"], counts=data["counts"],
                        finished_in_window=data["finished_in_window"],
                        window_minutes=data["window_minutes"],
                        waiting=data.get("waiting", 0),
                        owners=None if by_owner is None else {
                            o: (c["running"], c["queued"]) for o, c in by_owner.items()},
                        molecules=data.get("molecules"))

    def show(self, job_id: str) -> JobView:
        return JobView.model_validate(self._get(f"/jobs/{_seg(job_id)}"))

    def result(self, job_id: str, fmt: Literal["json", "xyz", "qcschema"]) -> ResultView:
        return ResultView.model_validate(self._get(f"/jobs/{_seg(job_id)}/result",
                                                   format=fmt))

    def export(self, fmt: Literal["csv", "jsonl", "sdf", "xyz"], status: Status | None = None,
               group: str | None = None, warn: Callable[[str], None] = lambda line: None,
               *, per_molecule: bool = False) -> tuple[int, Iterator[str]]:
        return self._stream("/export", _params(format=fmt, status=status, group=group,
                                               per_molecule=per_molecule or None))

    def progress(self, job_ids: list[str], group: str | None) -> Progress:
        path, params = _followed(job_ids, group, "progress")
        return Progress.model_validate(self._get(path, **params))

    def follow(self, job_ids: list[str], group: str | None,
               interval: float = 0.5) -> Iterator[Progress]:
        """The server's event stream: one poll of the store there serves every follower."""
        path, params = _followed(job_ids, group, "events")
        try:
            with self.client.stream("GET", API + path, params=params,
                                    timeout=FOLLOW_TIMEOUT) as response:
                if response.status_code >= 400:
                    raise_problem(response)
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        snap = Progress.model_validate_json(line[6:])
                        yield snap
                        if snap.done:
                            return
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"lost {self.url} while following: {exc}") from None

    # ------------------------------------------------------------- writes
    def submit(self, items: Iterable[ReadMolecule | BadRecord], options: SubmitOptions, *,
               tick: Callable[[], None] = lambda: None,
               progress: Callable[[int], None] = lambda n: None) -> SubmitResult:
        """Streams the molecules up as they are read (NDJSON). A record this side could
        not read goes up as a bad record, so that the server refuses the whole submission
        (unless skip_invalid), as a local one is refused."""
        def body() -> Iterator[bytes]:
            yield (json.dumps({"options": options.model_dump(mode="json")}) + "\n").encode()
            buf: list[str] = []
            for item in items:
                tick()
                buf.append(encode_bad(item) if isinstance(item, BadRecord)
                           else encode_molecule(item))
                if len(buf) >= 256:
                    yield ("\n".join(buf) + "\n").encode()
                    buf = []
            if buf:
                yield ("\n".join(buf) + "\n").encode()

        data = self._json("POST", "/jobs", content=body(),
                          headers={"Content-Type": "application/x-ndjson"})
        return SubmitResult.model_validate(data)

    def cancel(self, job_ids: list[str], group: str | None) -> CancelResult:
        if bool(job_ids) == (group is not None):
            raise UsageError("cancel: give job ids or --group, not both (nor neither)")
        body: dict[str, Any] = {"group": group} if group is not None else {"job_ids": job_ids}
        return CancelResult.model_validate(self._json("POST", "/cancel", json=body))

    def delete(self, job_ids: list[str]) -> Deleted:
        return Deleted.model_validate(self._json("POST", "/delete", json={"job_ids": job_ids}))

    def retry(self, job_ids: list[str], group: str | None, *, error_type: str | None = None,
              include_cancelled: bool = False) -> RetryResult:
        if bool(job_ids) == (group is not None):
            raise UsageError("retry: give job ids or --group, not both (nor neither)")
        body: dict[str, Any] = {"group": group} if group is not None else {"job_ids": job_ids}
        if error_type is not None:
            body["error_type"] = error_type
        if include_cancelled:
            body["include_cancelled"] = True
        return RetryResult.model_validate(self._json("POST", "/retry", json=body))


def _followed(job_ids: list[str], group: str | None, what: str
              ) -> tuple[str, dict[str, Any]]:
    """The route of a group's progress or events, or of some jobs'."""
    if bool(job_ids) == (group is not None):
        raise UsageError("give job ids or a group, not both (nor neither)")
    if group is not None:
        return f"/groups/{_seg(group)}/{what}", {}
    return f"/{what}", {"job_id": job_ids}


def _seg(text: str) -> str:
    """A path segment, escaped: an id with '/' or '..' cannot leave its route."""
    from urllib.parse import quote

    return quote(text, safe="")


def _params(**values: Any) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, Status) else v) for k, v in values.items()
            if v is not None}
