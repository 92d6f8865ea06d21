"""Output units: the canonical table (DESIGN.md section 2) and the `--units si` conversion."""

from __future__ import annotations

import pandas as pd

from hpgsim.units import (
    CANONICAL,
    NG_DL_PER_NMOL_L_TESTOSTERONE,
    PMOL_L_PER_PG_ML_ESTRADIOL,
    PMOL_L_PER_PG_ML_FREE_T,
    canonical_unit,
)

CANONICAL_UNITS: dict[str, str] = CANONICAL  # one table (hpgsim.units), read by reports, CLI and validation

LABELS: dict[str, str] = {
    "total_testosterone": "Total T",
    "free_testosterone": "Free T",
    "bioavailable_testosterone": "Bioavailable T",
    "estradiol": "Estradiol",
    "lh": "LH",
    "fsh": "FSH",
    "shbg": "SHBG",
    "inhibin_b": "Inhibin B",
    "te_ratio": "T/E2",
    "intratesticular_testosterone": "Intratesticular T",
    "sperm_concentration": "Sperm concentration",
    "total_sperm_count": "Total sperm count",
    "progressive_motility": "Progressive motility",
    "total_motile_count": "Total motile count",
    "semen_volume": "Semen volume",
}

_SI = {
    "total_testosterone": ("nmol/L", 1.0 / NG_DL_PER_NMOL_L_TESTOSTERONE),
    "bioavailable_testosterone": ("nmol/L", 1.0 / NG_DL_PER_NMOL_L_TESTOSTERONE),
    "free_testosterone": ("pmol/L", PMOL_L_PER_PG_ML_FREE_T),
    "estradiol": ("pmol/L", PMOL_L_PER_PG_ML_ESTRADIOL),
}


def unit_of(name: str, system: str = "conventional") -> str:
    """The output unit of a quantity in `system` ("conventional" = DESIGN.md section 2, or "si")."""
    if system == "si" and name in _SI:
        return _SI[name][0]
    return canonical_unit(name)


def to_units(df: pd.DataFrame, system: str = "conventional") -> pd.DataFrame:
    """Return a copy of an observables table in `system` ("conventional" = DESIGN.md units, or "si")."""
    if system == "conventional":
        return df.copy()
    if system != "si":
        raise ValueError(f"unknown unit system {system!r}; use 'conventional' or 'si'")
    out = df.copy()
    for col, (_, factor) in _SI.items():
        if col in out.columns:
            out[col] = out[col] * factor
    return out
