"""`make demo`: the seed's question in miniature.

A typical healthy man (normal estradiol) on anastrozole 1 mg daily for 6 months versus no treatment:
a before/after table and a plot (demo_out/plot.png). Research and education only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import hpgsim
from hpgsim.report.plot import plot_courses

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "demo_out"
QUANTITIES = [
    ("total_testosterone", "Total T", "ng/dL"),
    ("free_testosterone", "Free T", "pg/mL"),
    ("estradiol", "Estradiol", "pg/mL"),
    ("te_ratio", "T/E2", "(ng/dL)/(pg/mL)"),
    ("lh", "LH", "IU/L"),
    ("fsh", "FSH", "IU/L"),
    ("intratesticular_testosterone", "Intratesticular T", "nmol/L"),
    ("sperm_concentration", "Sperm concentration", "1e6/mL"),
    ("progressive_motility", "Progressive motility", "%"),
    ("total_motile_count", "Total motile count", "1e6"),
]


def main() -> int:
    t0 = time.perf_counter()
    console = Console(width=130)
    treated = hpgsim.simulate(HERE / "protocols" / "anastrozole_1mg_daily_6_months.yaml", phenotype="healthy")
    control = hpgsim.simulate(HERE / "protocols" / "no_treatment_6_months.yaml", phenotype="healthy")
    a, c = treated.observables, control.observables
    table = Table(title="Typical healthy man (normal E2): anastrozole 1 mg daily vs no treatment, 26 weeks")
    for col in ("quantity", "unit", "baseline", "26 wk untreated", "26 wk anastrozole", "change on anastrozole"):
        table.add_column(col, justify="left" if col in ("quantity", "unit") else "right")
    for q, label, unit in QUANTITIES:
        b, e_c, e_a = a[q].iloc[0], c[q].iloc[-1], a[q].iloc[-1]
        table.add_row(label, unit, f"{b:.3g}", f"{e_c:.3g}", f"{e_a:.3g}", f"{100 * (e_a / b - 1):+.0f}%")
    console.print(table)
    for flag in treated.flags:
        console.print(f"[yellow]flag:[/] {flag}")
    OUT.mkdir(exist_ok=True)
    plot_courses(
        [("no treatment", c), ("anastrozole 1 mg/day", a)],
        OUT / "plot.png",
        "Typical healthy man: anastrozole 1 mg daily vs no treatment",
        treated.flags,
        footer=hpgsim.DISCLAIMER,
    )
    console.print(f"plot: {OUT / 'plot.png'}  ({time.perf_counter() - t0:.1f} s)")
    console.print(f"[dim]{hpgsim.DISCLAIMER}[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
