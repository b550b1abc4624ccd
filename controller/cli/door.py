"""Which door a command goes through: the store mounted here (`--jobs-dir`, JOBS_DIR), or a
server (QFORGE_SERVER and QFORGE_TOKEN, or the profile `qforge login` keeps)."""

from __future__ import annotations

from pathlib import Path

from qforge.service.door import Manager
from qforge.service.local import local_manager
from qforge.settings import Settings


def manager_for(jobs_dir: Path | None, settings: Settings) -> Manager:
    """A given `--jobs-dir` means this machine's store; otherwise a configured server
    wins over JOBS_DIR; with neither, the local store (./jobs by default)."""
    from qforge.client.profile import remote_config

    remote = None if jobs_dir is not None else remote_config()
    if remote is not None:
        from qforge.client.remote import RemoteManager

        return RemoteManager(remote.url, remote.token)
    return local_manager(settings)
