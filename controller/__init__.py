"""qforge: xtb calculations as jobs. `qforge.Client` is the Python API (qforge.client.api);
it is imported on first use, so `qforge worker` and the runner start without it."""

from typing import Any

__all__ = ["Client"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from qforge.client.api import Client

        return Client
    raise AttributeError(f"module 'qforge' has no attribute {name!r}")
