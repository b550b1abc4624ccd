"""The door on this machine: a JobManager over the store mounted here."""

from __future__ import annotations

from qforge.service.door import Manager
from qforge.settings import Settings


def local_manager(settings: Settings) -> Manager:
    """The store mounted here, as its OS user: whoever can write the folder can do
    everything there (the admin role); the user's name becomes the jobs' owner."""
    from qforge.auth import local_identity
    from qforge.service.manager import JobManager
    from qforge.store.jobstore import JobStore

    return JobManager(JobStore(settings.jobs_dir), local_identity(), settings)
