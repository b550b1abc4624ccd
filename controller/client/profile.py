"""Where a remote command line finds its server: QFORGE_SERVER and QFORGE_TOKEN, or the
profile `qforge login URL` writes to ~/.config/qforge/profile.json (mode 0600)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qforge_runner.errors import InputError


class RemoteConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    token: str = Field(min_length=1, max_length=512)


def profile_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "qforge" / "profile.json"


def remote_config() -> RemoteConfig | None:
    """The server to go through, or None for the store mounted here. QFORGE_SERVER (with
    QFORGE_TOKEN, else the profile's token) wins over the profile."""
    url = os.environ.get("QFORGE_SERVER", "").strip()
    token = os.environ.get("QFORGE_TOKEN", "").strip()
    saved = _load_profile()
    if url:
        token = token or (saved.token if saved and saved.url == url.rstrip("/") else "")
        if not token:
            raise InputError("QFORGE_SERVER is set but no token: set QFORGE_TOKEN or run "
                             f"`qforge login {url}`")
        return _config(url, token)
    if "QFORGE_SERVER" in os.environ:  # set and empty: the local store, whatever is saved
        return None
    return saved


def _config(url: str, token: str) -> RemoteConfig:
    try:
        return RemoteConfig(url=url.rstrip("/"), token=token)
    except ValidationError:
        raise InputError(f"not a server URL: {url!r} (expected http(s)://host[:port])"
                         ) from None


def _load_profile() -> RemoteConfig | None:
    path = profile_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return RemoteConfig.model_validate(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, ValidationError):
        raise InputError(f"{path} is unreadable: run `qforge login URL` again") from None


def login(url: str, *, token: str | None) -> int:
    """Checks the URL and token against the server, then keeps them (mode 0600)."""
    from qforge.client.remote import RemoteManager

    token = token or os.environ.get("QFORGE_TOKEN", "").strip()
    if not token:
        if sys.stdin.isatty():
            import getpass

            token = getpass.getpass("token: ").strip()
        else:
            token = sys.stdin.readline().strip()
    config = _config(url, token)
    who = RemoteManager(config.url, config.token).whoami()
    path = profile_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(config.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)
    print(f"Signed in to {config.url} as {who['name']} ({who['role']}); profile kept in "
          f"{path}")
    return 0
