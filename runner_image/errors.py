"""The one exception a user can cause (input that qforge cannot run), and the one line
qforge makes of a pydantic error."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import ValidationError


class InputError(ValueError):
    """A problem with the submitted input.

    ``str(e)`` is one line that says what is wrong and where, e.g.
    ``"line 3: unknown element 'Xx'"``; it is shown to the user as it is.
    """

    @classmethod
    def from_validation_error(cls, exc: ValidationError, *, prefix: str = "") -> InputError:
        """An InputError of `validation_line(exc, prefix=prefix)`."""
        return cls(validation_line(exc, prefix=prefix))


def _dotted(loc: Sequence[str | int]) -> str:
    return ".".join(str(part) for part in loc)


def validation_line(exc: ValidationError, *, prefix: str = "",
                    location: Callable[[Sequence[str | int]], str] = _dotted) -> str:
    """One line from pydantic's first error: ``"charge: Input should be a valid integer"``.

    The one way qforge words a pydantic error for a person (bad input, a bad setting, a
    damaged record). Our own validators raise ``ValueError`` with a finished sentence;
    pydantic prefixes those with "Value error, ", which is dropped here. The location
    (``molecule``, ``labels.team``; `location` spells it otherwise, e.g. as the environment
    variable of a setting) leads the line unless the message already names it.
    """
    err = exc.errors(include_url=False)[0]
    msg = str(err["msg"]).removeprefix("Value error, ")
    loc = location(err["loc"]) if err["loc"] else ""
    if prefix:
        loc = f"{prefix}.{loc}" if loc else prefix
    if loc and not msg.startswith(loc):
        msg = f"{loc}: {msg}"
    return " ".join(msg.split())
