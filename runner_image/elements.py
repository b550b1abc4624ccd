"""The periodic table as far as qforge needs it: symbols and atomic numbers."""

from __future__ import annotations

from typing import Final

SYMBOLS: Final[tuple[str, ...]] = (
    "H", "He",
    "Li", "Be", "B", "C", "N", "O", "F", "Ne",
    "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar",
    "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
    "Ga", "Ge", "As", "Se", "Br", "Kr",
    "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd",
    "In", "Sn", "Sb", "Te", "I", "Xe",
    "Cs", "Ba",
    "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu",
    "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg",
    "Tl", "Pb", "Bi", "Po", "At", "Rn",
    "Fr", "Ra",
    "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr",
    "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn",
    "Nh", "Fl", "Mc", "Lv", "Ts", "Og",
)  # fmt: skip

ATOMIC_NUMBER: Final[dict[str, int]] = {sym: z for z, sym in enumerate(SYMBOLS, start=1)}
_BY_LOWER: Final[dict[str, str]] = {sym.lower(): sym for sym in SYMBOLS}


def normalise_symbol(text: str) -> str | None:
    """``"cl"``/``"CL"``/``"17"`` → ``"Cl"``; None when it names no element."""
    text = text.strip()
    if text.isdecimal():
        z = int(text)
        return SYMBOLS[z - 1] if 1 <= z <= len(SYMBOLS) else None
    return _BY_LOWER.get(text.lower())
