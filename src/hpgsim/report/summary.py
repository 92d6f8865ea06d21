"""Baseline-versus-end summaries of simulated courses (reads results, computes no dynamics)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hpgsim.observe.units import CANONICAL_UNITS, unit_of

SUMMARY_QUANTITIES = [
    "total_testosterone",
    "free_testosterone",
    "bioavailable_testosterone",
    "estradiol",
    "te_ratio",
    "lh",
    "fsh",
    "shbg",
    "inhibin_b",
    "intratesticular_testosterone",
    "sperm_concentration",
    "total_sperm_count",
    "progressive_motility",
    "total_motile_count",
    "semen_volume",
]


def baseline_vs_end(df: pd.DataFrame, units: str = "conventional") -> dict[str, dict[str, Any]]:
    """Per quantity: baseline (day 0), end (last day), change and % change, with the unit."""
    out: dict[str, dict[str, Any]] = {}
    for q in SUMMARY_QUANTITIES + [c for c in df.columns if c.endswith("_concentration") and c not in CANONICAL_UNITS]:
        if q not in df.columns:
            continue
        b = float(df[q].iloc[0])
        e = float(df[q].iloc[-1])
        pct = 100.0 * (e - b) / b if abs(b) > 1e-12 else None
        out[q] = {
            "unit": unit_of(q, "si" if units == "si" else "conventional"),
            "baseline": _clean(b),
            "end": _clean(e),
            "change": _clean(e - b),
            "percent_change": None if pct is None else _clean(pct),
        }
    return out


def _clean(x: float) -> float:
    if not np.isfinite(x):
        raise ValueError("non-finite value in a summary")
    return float(f"{x:.6g}")
