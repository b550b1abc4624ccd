"""Thermochemistry of a Hessian run (hess, ohess), read from xtb's text output.

xtb 6.5 prints its rigid-rotor/harmonic-oscillator (RRHO, with Grimme's free-rotor
interpolation for low modes) thermochemistry only in its text output, not in
xtbout.json. Three places of that output are read, each value as xtb printed it:

    T/K    H(0)-H(T)+PV         H(T)/Eh          T*S/Eh         G(T)/Eh
 298.15    0.378069E-02    0.240777E-01    0.214061E-01    0.267162E-02      (the table)

    :: total free energy          -5.067699146062 Eh   ::                   (THERMODYNAMIC)
    :: zero point energy           0.020297021404 Eh   ::
    :: G(RRHO) contrib.            0.002671615783 Eh   ::

    | TOTAL ENTHALPY             -5.046293052395 Eh   |                    (the final box)

The temperature is set for xtb through an xcontrol ``$thermo temp=...`` block
(`JobSpec.xcontrol`); the table's temperature shows which one xtb used.
"""

from __future__ import annotations

import math
import re
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

_NUM = r"(-?\d+\.\d+(?:[EeDd][-+]?\d+)?)"
_TABLE_HEAD: Final = re.compile(r"^\s*T/K\s+H\(0\)-H\(T\)\+PV\s+H\(T\)/Eh\s+T\*S/Eh\s+G\(T\)/Eh",
                                re.M)
_TABLE_ROW: Final = re.compile(rf"^\s*{_NUM}\s+{_NUM}\s+{_NUM}\s+{_NUM}\s+{_NUM}\s*$", re.M)
_BOX: Final = {
    "free_energy": re.compile(rf"::\s*total free energy\s+{_NUM}\s+Eh\s*::"),
    "zpe": re.compile(rf"::\s*zero point energy\s+{_NUM}\s+Eh\s*::"),
    "g_rrho": re.compile(rf"::\s*G\(RRHO\) contrib\.\s+{_NUM}\s+Eh\s*::"),
    "enthalpy": re.compile(rf"\|\s*TOTAL ENTHALPY\s+{_NUM}\s+Eh\s*\|"),
}
_NAMES: Final = {"free_energy": "total free energy", "zpe": "zero point energy",
                 "g_rrho": "G(RRHO) contrib.", "enthalpy": "TOTAL ENTHALPY"}


class Thermochemistry(BaseModel):
    """xtb's RRHO thermochemistry at one temperature. Energies in Eh."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(allow_inf_nan=False, description="K, as xtb used it")
    zpe: float = Field(allow_inf_nan=False, description="zero-point vibrational energy, Eh")
    enthalpy: float = Field(allow_inf_nan=False,
                            description="total enthalpy H = E + ZPVE + H(0→T) + pV, Eh")
    ts: float = Field(allow_inf_nan=False, description="T·S, Eh (xtb prints 6 digits)")
    g_rrho: float = Field(allow_inf_nan=False,
                          description="G(RRHO) contribution (ZPVE included), Eh")
    free_energy: float = Field(allow_inf_nan=False,
                               description="total free energy G = E + G(RRHO), Eh")


class ThermoMissing(ValueError):
    """xtb's output has no (complete) thermochemistry; the message says what is missing."""


def _float(text: str) -> float:
    value = float(text.replace("D", "E").replace("d", "e"))
    if not math.isfinite(value):
        raise ThermoMissing(f"a non-finite number {text!r} in xtb's thermochemistry")
    return value


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    match = None
    for match in pattern.finditer(text):  # noqa: B007 - the last one is the final result
        pass
    return match


def parse_thermo(text: str) -> Thermochemistry:
    """The thermochemistry of xtb's text output; ThermoMissing when a part is absent."""
    head = _last(_TABLE_HEAD, text)
    if head is None:
        raise ThermoMissing("xtb's output has no thermochemistry table (T/K, H(T), T*S, G(T))")
    row = _TABLE_ROW.search(text, head.end(), head.end() + 600)
    if row is None:
        raise ThermoMissing("xtb's thermochemistry table has no row of numbers")
    values: dict[str, float] = {}
    for key, pattern in _BOX.items():
        match = _last(pattern, text)
        if match is None:
            raise ThermoMissing(f"xtb's output has no {_NAMES[key]!r} line")
        values[key] = _float(match.group(1))
    return Thermochemistry(temperature=_float(row.group(1)), ts=_float(row.group(4)),
                           **values)
