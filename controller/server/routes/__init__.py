"""The API's routes, one module per concern: reads of jobs and groups (reads.py),
progress and its event streams (progress.py), submissions (submit.py), changes to jobs
(changes.py). Each builds an APIRouter from the Context the app hands it; the shapes of
ids, groups and bodies they share are in shapes.py. The route modules leave out
`from __future__ import annotations`: FastAPI reads their local `Who` alias at run time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from qforge.auth.roles import Identity
from qforge.server.hub import ProgressHub
from qforge.service.manager import JobManager
from qforge.settings import Settings


@dataclass(frozen=True)
class Context:
    """What the routes need of the app: its settings, the caller's identity (a FastAPI
    dependency), a JobManager acting for an identity, the hub progress streams share."""

    settings: Settings
    identity: Callable[..., Identity]
    manager: Callable[[Identity], JobManager]
    hub: ProgressHub


def chunks(pieces: Iterator[str], size: int = 65536) -> Iterator[bytes]:
    """Text pieces joined into chunks of about `size` characters, as bytes."""
    buf: list[str] = []
    n = 0
    for piece in pieces:
        buf.append(piece)
        n += len(piece)
        if n >= size:
            yield "".join(buf).encode()
            buf, n = [], 0
    if buf:
        yield "".join(buf).encode()
