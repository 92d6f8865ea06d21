"""The validation report: one HTML page with a summary, per-study panels and score tables.

Reads results (cohort bands and scored rows); computes no dynamics. Figures are embedded as PNG.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

LEVELS = ("mean", "median", "geometric_mean")


def _figure(study_id: str, rows: Sequence[dict[str, Any]], bands: dict[tuple[str, str, str], pd.DataFrame]) -> str:
    keys = [k for k in bands if any(r["arm"] == k[0] and r["quantity"] == k[1] for r in rows)]
    if not keys:
        return ""
    ncol = min(3, len(keys))
    nrow = (len(keys) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.2 * nrow), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        arm, q, unit = key
        b = bands[key]
        ax.fill_between(b.index, b.p5, b.p95, color="tab:blue", alpha=0.15, lw=0, label="virtual 90%")
        ax.fill_between(b.index, b.p25, b.p75, color="tab:blue", alpha=0.3, lw=0, label="virtual 50%")
        ax.plot(b.index, b.p50, color="tab:blue", lw=1.5, label="virtual median")
        for r in rows:
            if r["arm"] == arm and r["quantity"] == q and r["stat"] in LEVELS and r["day"] is not None and "error" not in r:
                err = r.get("observed_se")
                ax.errorbar(
                    [r["day"]],
                    [r["observed"]],
                    yerr=None if err is None else [[1.96 * err], [1.96 * err]],
                    fmt="o",
                    color="black",
                    ms=5,
                    capsize=3,
                    label="published",
                )
        ax.set_title(f"{arm[:45]}\n{q} [{unit}]", fontsize=8)
        ax.set_xlabel("day", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=False))
    fig.legend(uniq.values(), uniq.keys(), loc="upper right", fontsize=7)
    fig.suptitle(study_id, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 0.95))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, list):
        return "[" + ", ".join(_fmt(v) for v in x) + "]"
    if isinstance(x, float):
        return f"{x:.4g}"
    return html.escape(str(x))


def write_report(
    path: str | Path,
    scored: Sequence[dict[str, Any]],
    bands: dict[str, dict[tuple[str, str, str], pd.DataFrame]],
    summary: dict[str, Any],
    title: str,
    disclaimer: str,
) -> None:
    """Write the HTML report atomically (a temporary file renamed into place)."""
    studies: dict[str, list[dict[str, Any]]] = {}
    for r in scored:
        studies.setdefault(r["study"], []).append(r)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>hpgsim validation</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px} .no{color:#b00} .yes{color:#070} img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p><em>{html.escape(disclaimer)}</em></p>",
        f"<p><b>Within: {summary['within']}/{summary['observations']}</b>"
        f" ({100 * (summary['within_fraction'] or 0):.1f}%); directions right: "
        f"{summary['directions_right']}/{summary['directions']}."
        " Rules: issue 3 (changes from baseline within max(1.96 SE, 25%, 5% of baseline); levels within max(1.96 SE, 20%);"
        " % / fold changes within max(1.96 SE, 25%, 5 points / 0.1); proportions inside the widened Wilson interval;"
        " median times within 30%).</p>",
    ]
    unsimulated = sum("error" in r for r in scored)
    if unsimulated:
        parts.append(f"<p class='no'><b>Not simulated: {unsimulated} observations</b> (invalid input; see each row).</p>")
    parts.append("<table><tr><th>study</th><th>within</th></tr>")
    for sid, rows in studies.items():
        w = sum(bool(r["within"]) for r in rows)
        parts.append(f"<tr><td><a href='#{html.escape(sid)}'>{html.escape(sid)}</a></td><td>{w}/{len(rows)}</td></tr>")
    parts.append("</table>")
    cols = ["arm", "quantity", "unit", "day", "stat", "observed", "simulated", "simulated_ci95", "n_virtual", "rule"]
    cols += ["error", "within"] if unsimulated else ["within"]
    for sid, rows in studies.items():
        parts.append(f"<h2 id='{html.escape(sid)}'>{html.escape(sid)}</h2>")
        img = _figure(sid, rows, bands.get(sid, {}))
        if img:
            parts.append(f"<img alt='{html.escape(sid)} bands' src='data:image/png;base64,{img}'>")
        parts.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>")
        for r in rows:
            cls = "yes" if r["within"] else "no"
            cells = "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols[:-1])
            parts.append(f"<tr>{cells}<td class='{cls}'>{'yes' if r['within'] else 'no'}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, p)
