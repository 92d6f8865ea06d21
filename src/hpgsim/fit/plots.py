"""Plots of a personal fit (observed vs posterior predictive) and of a prediction (fan chart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hpgsim.observe.units import LABELS


def plot_predictive(table: pd.DataFrame, path: str | Path, summary: dict[str, Any]) -> None:
    """One panel per lab: observed values (dots; triangles for results below an assay limit) and the
    posterior predictive median with its 90% interval, by visit."""
    quantities = list(dict.fromkeys(table["quantity"])) if len(table) else []
    n = max(len(quantities), 1)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows + 0.8), squeeze=False)
    for ax, q in zip(axes.flat, quantities, strict=False):
        d = table[table["quantity"] == q]
        x = np.arange(len(d))
        err = np.vstack([d["predicted_median"] - d["predicted_p5"], d["predicted_p95"] - d["predicted_median"]])
        ax.errorbar(x, d["predicted_median"], yerr=err, fmt="s", color="tab:blue", capsize=4, label="predicted (90%)")
        cen = d["censored"].to_numpy(dtype=bool)
        ax.plot(x[~cen], d["observed"].to_numpy()[~cen], "o", color="black", label="observed")
        if cen.any():
            ax.plot(x[cen], d["observed"].to_numpy()[cen], "v", color="black", label="below limit")
        ax.set_xticks(x, [str(v) for v in d["visit"]], rotation=30, fontsize=7)
        ax.set_title(f"{LABELS.get(q, q)} [{d['unit'].iloc[0]}]", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(quantities) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    p = summary["patient"]
    fig.suptitle(f"{p['name']}: labs vs posterior predictive ({summary['method']}, prior '{p['phenotype']}')", fontsize=11)
    fig.text(0.01, 0.005, summary["disclaimer"], fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)


FAN_PANELS = (
    "total_testosterone",
    "estradiol",
    "te_ratio",
    "lh",
    "fsh",
    "intratesticular_testosterone",
    "sperm_concentration",
    "total_motile_count",
    "inhibin_b",
)


def plot_fan(bands: pd.DataFrame, path: str | Path, summary: dict[str, Any]) -> None:
    """Fan chart: median with 50% and 90% bands over posterior draws, with target lines."""
    fig, axes = plt.subplots(3, 3, figsize=(14, 10), sharex=True)
    targets = summary.get("targets", [])
    for ax, q in zip(axes.flat, FAN_PANELS, strict=True):
        d = bands[bands["quantity"] == q]
        ax.fill_between(d["day"], d["p5"], d["p95"], color="tab:blue", alpha=0.18, label="90%")
        ax.fill_between(d["day"], d["p25"], d["p75"], color="tab:blue", alpha=0.35, label="50%")
        ax.plot(d["day"], d["p50"], color="tab:blue", lw=1.6, label="median")
        for t in targets:
            if t["quantity"] != q:
                continue
            ax.axhline(float(t["threshold"]), color="firebrick", ls="--", lw=1)
            if t["day"] is not None:
                ax.axvline(t["day"], color="firebrick", ls=":", lw=1)
            ax.text(0.02, 0.95, f"P({t['target']}) = {t['probability']:.2f}", transform=ax.transAxes, fontsize=7.5, va="top")
        ax.set_title(f"{LABELS.get(q, q)} [{d['unit'].iloc[0] if len(d) else ''}]", fontsize=10)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("day")
    p = summary["patient"]
    fig.suptitle(
        f"{p['name']} on {summary['protocol']['name']}: {summary['n_draws']} posterior draws (median, 50%, 90%)", fontsize=12
    )
    fig.text(0.01, 0.005, summary["disclaimer"], fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)
