"""Molecules of the end-to-end tests (XYZ text), from tests/molecules.py."""

from __future__ import annotations

from tests.molecules import UNKNOWN_ELEMENT as INVALID
from tests.molecules import WATER, alkane

__all__ = ["INVALID", "WATER", "alkane"]
