"""Plots of simulated courses: hormones and semen panels (reads results, computes no dynamics)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from hpgsim.observe.units import LABELS, unit_of

PANELS: list[tuple[str, list[str]]] = [
    ("Testosterone", ["total_testosterone"]),
    ("Free testosterone", ["free_testosterone"]),
    ("Estradiol", ["estradiol"]),
    ("Gonadotropins", ["lh", "fsh"]),
    ("Intratesticular T", ["intratesticular_testosterone"]),
    ("T/E2 ratio", ["te_ratio"]),
    ("Sperm concentration", ["sperm_concentration"]),
    ("Total motile count", ["total_motile_count"]),
    ("Inhibin B and SHBG", ["inhibin_b", "shbg"]),
]

REFERENCE_BANDS = {
    "total_testosterone": (264, 916),  # Travison 2017, 2.5-97.5th percentile
    "estradiol": (10, 40),
    "sperm_concentration": (16, None),  # WHO 2021 lower reference limit
    "te_ratio": (10, None),
}


def plot_courses(
    courses: Sequence[tuple[str, pd.DataFrame]],
    path: str | Path,
    title: str,
    flags: Sequence[str] = (),
    units: str = "conventional",
    footer: str = "",
) -> None:
    """Draw one or more simulated courses (label, observables by day) on a 3x3 grid and save as PNG."""
    notes = list(flags)
    bottom = 0.07 + 0.018 * len(notes)
    fig, axes = plt.subplots(3, 3, figsize=(14, 10.5), sharex=True)
    # fixed margins: tight_layout costs more than the rest of a one-year simulation
    fig.subplots_adjust(left=0.06, right=0.985, top=0.93, bottom=bottom, wspace=0.22, hspace=0.22)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (ptitle, cols) in zip(axes.flat, PANELS, strict=True):
        for ci, (label, df) in enumerate(courses):
            for k, col in enumerate(cols):
                if col not in df.columns:
                    continue
                style = "-" if k == 0 else "--"
                name = label if len(cols) == 1 else f"{LABELS[col]} ({label})" if len(courses) > 1 else LABELS[col]
                ax.plot(df.index, df[col], style, color=colors[ci % len(colors)], lw=1.6, label=name)
        band = REFERENCE_BANDS.get(cols[0])
        if band is not None and units == "conventional":
            lo, hi = band
            ymax = ax.get_ylim()[1]
            ax.axhspan(lo, hi if hi is not None else max(ymax, lo * 1.5), color="0.9", zorder=0)
        unit_txt = " / ".join(sorted({unit_of(c, "si" if units == "si" else "conventional") for c in cols}))
        ax.set_title(f"{ptitle} [{unit_txt}]", fontsize=10)
        ax.grid(alpha=0.3)
        if cols[0] in ("sperm_concentration", "total_motile_count"):
            values = pd.concat([df[cols[0]] for _, df in courses if cols[0] in df.columns])
            if len(values) and values.max() > 50 * max(values.min(), 1e-3):
                ax.set_yscale("symlog", linthresh=0.1)  # azoospermia (< 0.01 M/mL) to normal on one axis
        if len(cols) > 1 or len(courses) > 1:
            ax.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("day")
    fig.suptitle(title, fontsize=13)
    text = "\n".join(["FLAG: " + f for f in notes] + ([footer] if footer else []))
    if text:
        fig.text(0.01, 0.005, text, fontsize=7.5, va="bottom", ha="left", color="firebrick" if notes else "0.3")
    fig.savefig(path, dpi=100)
    plt.close(fig)
