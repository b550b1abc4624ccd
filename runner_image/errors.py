"""The one exception a user can cause: input that qforge cannot run."""

from __future__ import annotations

from pydantic import ValidationError


class InputError(ValueError):
    """A problem with the submitted input.

    ``str(e)`` is one line that says what is wrong and where, e.g.
    ``"line 3: unknown element 'Xx'"``; it is shown to the user as it is.
    """

    @classmethod
    def from_validation_error(cls, exc: ValidationError, *, prefix: str = "") -> InputError:
        """One line from pydantic's first error: ``"charge: Input should be a valid integer"``.

        Our own validators raise ``ValueError`` with a finished sentence; pydantic prefixes
        those with "Value error, ", which is dropped here. The location (``molecule``,
        ``labels.team``) leads the line unless the message already names it.
        """
        err = exc.errors(include_url=False)[0]
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        loc = ".".join(str(part) for part in err["loc"])
        if prefix:
            loc = f"{prefix}.{loc}" if loc else prefix
        if loc and not msg.startswith(loc):
            msg = f"{loc}: {msg}"
        return cls(" ".join(msg.split()))
