"""Trial outputs: tables (CSV), per-man Parquet, plots (fan chart, responder bars), report.html, summary.json.

Everything is written into a temporary folder beside `out` and then renamed into place, so a failed
run leaves no half-written output.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hpgsim.errors import SpecError
from hpgsim.observe.units import LABELS, unit_of
from hpgsim.simulation import E2_LOW_PG_ML

if TYPE_CHECKING:
    from hpgsim.trial.run import TrialResult

FILES = (
    "endpoints.csv",
    "responders.csv",
    "subgroups.csv",
    "published.csv",
    "results.parquet",
    "fan_chart.png",
    "responders.png",
    "report.html",
    "summary.json",
)


def check_out(out: Path) -> None:
    """Refuse an --out that is a file, or a non-empty folder that is not an earlier trial output."""
    if out.exists() and not out.is_dir():
        raise SpecError(f"--out {out}: exists and is not a directory. Choose a directory path.")
    if out.is_dir() and any(out.iterdir()):
        summary = out / "summary.json"
        try:
            ok = json.loads(summary.read_text(encoding="utf-8")).get("kind") == "hpgsim trial"
        except (OSError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise SpecError(
                f"--out {out}: is a non-empty folder that does not hold an earlier trial's output; "
                "choose a new or empty folder (an earlier trial output is replaced)."
            )


def write_outputs(res: TrialResult, out: Path) -> Path:
    check_out(out)
    parent = out.parent if out.parent.exists() else None
    if parent is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        parent = out.parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # an ordinary folder once renamed (mkdtemp makes it private)
    try:
        res.endpoints.to_csv(tmp / "endpoints.csv", index=False, float_format="%.6g")
        res.responders.to_csv(tmp / "responders.csv", index=False, float_format="%.6g")
        res.subgroups.to_csv(tmp / "subgroups.csv", index=False, float_format="%.6g")
        res.published.to_csv(tmp / "published.csv", index=False, float_format="%.6g")
        res.per_man.to_parquet(tmp / "results.parquet", index=False)
        fan = fan_chart(res)
        bars = responder_bars(res)
        (tmp / "fan_chart.png").write_bytes(fan)
        (tmp / "responders.png").write_bytes(bars)
        (tmp / "report.html").write_text(render_html(res, fan, bars), encoding="utf-8")
        (tmp / "summary.json").write_text(json.dumps(res.summary, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=parent))
            os.replace(out, old / "x")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def fan_chart(res: TrialResult) -> bytes:
    """Per endpoint quantity, each arm's median with 50% and 90% bands over time (underlying values)."""
    b = res.bands
    quantities = list(dict.fromkeys(b["quantity"]))[:9]
    ncol = min(3, len(quantities))
    nrow = int(np.ceil(len(quantities) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.3 * nrow + 0.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    arms = list(dict.fromkeys(b["arm"]))
    for ax, q in zip(axes.flat, quantities, strict=False):
        for ci, arm in enumerate(arms):
            d = b[(b["arm"] == arm) & (b["quantity"] == q)]
            c = colors[ci % len(colors)]
            ax.fill_between(d["day"], d["p5"], d["p95"], color=c, alpha=0.12, lw=0)
            ax.fill_between(d["day"], d["p25"], d["p75"], color=c, alpha=0.25, lw=0)
            ax.plot(d["day"], d["p50"], color=c, lw=1.6, label=arm)
        if q == "estradiol":
            ax.axhline(E2_LOW_PG_ML, color="firebrick", ls="--", lw=1)
            ax.text(0, E2_LOW_PG_ML, f" over-suppression (< {E2_LOW_PG_ML:g} pg/mL)", color="firebrick", fontsize=7, va="bottom")
        ax.set_title(f"{LABELS.get(q, q)} [{unit_of(q)}]", fontsize=10)
        ax.set_xlabel("day")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(quantities) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{res.trial.name}: median, 50% and 90% of virtual men", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def responder_bars(res: TrialResult) -> bytes:
    """Responder rates per rule and arm with Wilson 95% CIs."""
    r = res.responders
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * max(1, r["responder"].nunique()) + 2), 4.2))
    if len(r):
        rules = list(dict.fromkeys(r["responder"]))
        arms = list(dict.fromkeys(r["arm"]))
        width = 0.8 / len(arms)
        for ai, arm in enumerate(arms):
            d = r[r["arm"] == arm].set_index("responder").loc[rules]
            x = np.arange(len(rules)) + ai * width - 0.4 + width / 2
            err = np.clip(np.vstack([d["rate"] - d["ci_low"], d["ci_high"] - d["rate"]]) * 100, 0, None)
            ax.bar(x, d["rate"] * 100, width, yerr=err, capsize=3, label=arm)
        labels = [f"{n}\n(safety)" if bool(r[r["responder"] == n]["safety"].iloc[0]) else n for n in rules]
        ax.set_xticks(np.arange(len(rules)), labels, fontsize=8)
        ax.legend(fontsize=8)
    ax.set_ylabel("% of men (95% Wilson CI)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{res.trial.name}: responder rates", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    if isinstance(x, bool | np.bool_):
        return "yes" if x else ""
    if isinstance(x, float | np.floating):
        return f"{x:.{digits}g}"
    return html.escape(str(x))


def _ci(lo: Any, hi: Any) -> str:
    return "-" if lo is None or not np.isfinite(lo) else f"{_f(lo)} to {_f(hi)}"


def _table(df: pd.DataFrame, cols: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in cols)
    body = []
    for _, row in df.iterrows():
        cells = []
        for key, _ in cols:
            if key == "ci":
                cells.append(_ci(row["ci_low"], row["ci_high"]))
            elif key == "diff_ci":
                cells.append(_ci(row["diff_ci_low"], row["diff_ci_high"]))
            elif key == "rate_pct":
                cells.append(_f(100 * row["rate"]) + "%")
            elif key == "ci_pct":
                cells.append(_ci(100 * row["ci_low"], 100 * row["ci_high"]) + "%")
            elif key == "diff_pct":
                cells.append(_f(100 * row["diff_vs_control"]) + " pts" if np.isfinite(row["diff_vs_control"]) else "-")
            elif key == "diff_ci_pct":
                cells.append(_ci(100 * row["diff_ci_low"], 100 * row["diff_ci_high"]))
            else:
                cells.append(_f(row[key]))
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def endpoint_table_cols() -> list[tuple[str, str]]:
    return [
        ("arm", "arm"),
        ("n", "n"),
        ("estimate", "estimate"),
        ("ci", "95% CI"),
        ("diff_vs_control", "vs control"),
        ("diff_ci", "95% CI"),
    ]


def render_html(res: TrialResult, fan: bytes, bars: bytes) -> str:
    """A self-contained report (PNG plots embedded as base64)."""
    from hpgsim.simulation import DISCLAIMER

    t = res.trial
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(t.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}"
        "th{background:#f2f2f2}td:first-child{text-align:left}"
        ".disclaimer{background:#fff4e5;border:1px solid #f0b36b;padding:.7em}"
        ".flags li{color:#a33}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(t.name)}</h1>",
        f"<p class='disclaimer'><b>Research and education only.</b> {html.escape(DISCLAIMER)}</p>",
        f"<p>{html.escape(t.description)}</p>" if t.description else "",
        "<p>"
        + html.escape(
            f"Virtual trial, {t.n_per_arm} men per arm (parallel groups), seed {t.seed}; population: "
            + ", ".join(f"{k} {100 * v:.0f}%" for k, v in t.phenotypes.items())
            + (f"; inclusion: {'; '.join(f.text for f in t.inclusion)}" if t.inclusion else "")
            + f". Labs read at {t.lab_hour:g}:00 through the observation model (within-person and assay noise). "
            "CIs: 95% percentile bootstrap over virtual men (endpoints, differences), Wilson (proportions), "
            "Newcombe (differences of responder rates)."
        )
        + "</p>",
    ]
    if res.flags:
        parts.append("<h2>Flags</h2><ul class='flags'>" + "".join(f"<li>{html.escape(f)}</li>" for f in res.flags) + "</ul>")
    parts.append("<h2>Arms</h2><ul>")
    for a in t.arms:
        regs = "; ".join(
            f"{r.drug} {r.dose_text} every {r.interval_h:g} h" if r.interval_h else f"{r.drug} {r.dose_text}"
            for r in a.protocol.regimens
        )
        parts.append(
            f"<li><b>{html.escape(a.name)}</b>{' (control)' if a.control else ''}: {a.protocol.duration_days:g} days; "
            f"{html.escape(regs) or 'no treatment'}</li>"
        )
    parts.append("</ul><h2>Endpoints</h2>")
    for name, d in res.endpoints.groupby("endpoint", sort=False):
        unit = d["unit"].iloc[0]
        parts.append(f"<h3>{html.escape(str(name))} [{html.escape(str(unit))}]</h3>" + _table(d, endpoint_table_cols()))
    if len(res.responders):
        parts.append("<h2>Responder rates</h2>")
        cols = [
            ("responder", "rule"),
            ("safety", "safety"),
            ("arm", "arm"),
            ("n", "n"),
            ("responders", "responders"),
            ("rate_pct", "rate"),
            ("ci_pct", "95% CI (Wilson)"),
            ("diff_pct", "vs control"),
            ("diff_ci_pct", "95% CI (Newcombe)"),
        ]
        parts.append(_table(res.responders, cols))
        parts.append(
            "<ul>"
            + "".join(
                f"<li>{html.escape(str(r))}: {html.escape(str(x))}</li>"
                for r, x in dict(zip(res.responders["responder"], res.responders["rule"], strict=True)).items()
            )
            + "</ul>"
        )
        parts.append(f"<img alt='responder rates' src='data:image/png;base64,{base64.b64encode(bars).decode()}'>")
    if len(res.subgroups):
        parts.append("<h2>Subgroups</h2><p>Subgroups by the measured baseline value (day 0) or the covariate.</p>")
        cols = [("level", "subgroup"), *endpoint_table_cols()]
        for (sg, kind, name), d in res.subgroups.groupby(["subgroup", "kind", "name"], sort=False):
            parts.append(
                f"<h3>{html.escape(str(sg))}: {html.escape(str(name))}{' (rate)' if kind == 'responder' else ''}</h3>"
                + _table(d, cols)
            )
    parts.append("<h2>Published studies reporting the same endpoints</h2>")
    if len(res.published):
        parts.append(
            "<p>Packaged study arms with the same drug (or drug class) reporting an endpoint quantity; ours is the same "
            "statistic, in the study's unit, on our arm's men (those passing the study's inclusion filters where enough do). "
            "Rows from another phenotype compare across populations.</p>"
        )
        from hpgsim.trial.published import COLUMNS

        cols = [(c, c) for c in COLUMNS]
        parts.append(_table(res.published, cols))
    else:
        parts.append("<p>No packaged study reports these endpoints for these drugs.</p>")
    parts.append("<h2>Time course</h2>")
    parts.append(f"<img alt='fan chart' src='data:image/png;base64,{base64.b64encode(fan).decode()}'>")
    parts.append(f"<p class='disclaimer'>{html.escape(DISCLAIMER)}</p></body></html>")
    return "\n".join(p for p in parts if p)
