"""`make demo`: the seed's question as a virtual trial.

Can anastrozole improve sperm quality in subfertile men whose estradiol is not elevated, and for whom?
300 subfertile men per arm (half from the normal-T/E2 phenotype, half from the low-T/E2 one),
anastrozole 1 mg daily for 17 weeks vs no treatment (examples/trials/anastrozole_subfertile.yaml).
Prints the endpoint and responder tables, the answer by baseline T/E2 (< 10 vs >= 10), and writes
demo_out/report.html. Research and education only.

Options: --n N (men per arm, default the file's 300), --processes P (default 2).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import hpgsim
from hpgsim.cli.trial import print_result

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "demo_out"
TRIAL = HERE / "trials" / "anastrozole_subfertile.yaml"


def _pct(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{100 * x:.0f}%"


def answer(res: object, console: Console) -> None:
    """The seed's question by baseline T/E2 subgroup: the treated-minus-control differences."""
    sub = res.subgroups  # type: ignore[attr-defined]
    sub = sub[(sub["subgroup"] == "baseline T/E2") & ~sub["control"]]
    t = Table(title="The seed's question: anastrozole minus no treatment at 17 weeks, by baseline T/E2", title_justify="left")
    t.add_column("measure")
    levels = list(dict.fromkeys(sub["level"]))
    for lv in levels:
        n = int(sub[sub["level"] == lv]["n"].iloc[0])
        t.add_column(f"T/E2 {lv} (n={n} treated)", justify="right")
    for name in dict.fromkeys(sub["name"]):
        cells = []
        for lv in levels:
            r = sub[(sub["level"] == lv) & (sub["name"] == name)].iloc[0]
            if r["kind"] == "responder":
                cells.append(f"{100 * r['diff_vs_control']:+.0f} pts ({_pct(r['diff_ci_low'])} to {_pct(r['diff_ci_high'])})")
            else:
                cells.append(f"{r['diff_vs_control']:+.3g} ({r['diff_ci_low']:.3g} to {r['diff_ci_high']:.3g})")
        t.add_row(str(name), *cells)
    console.print(t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="men per arm (default 300, from the trial file)")
    ap.add_argument("--processes", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    console = Console(width=150)
    console.print(f"[bold]{TRIAL.relative_to(HERE.parent)}[/]: running the virtual trial ...")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task("men", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        res = hpgsim.trial(TRIAL, out=OUT, processes=args.processes, n=args.n, progress=progress)
    print_result(res, console, subgroups=False)
    answer(res, console)
    pub = res.published
    if len(pub):
        t = Table(
            title="Published studies beside ours (same drug or class; ours = same statistic on our treated men)",
            title_justify="left",
        )
        for c in ("study", "match", "population", "quantity", "day", "stat", "published", "ours"):
            t.add_column(c, justify="right" if c in ("day", "published", "ours") else "left")
        for _, r in pub.iterrows():
            t.add_row(
                r["study"],
                r["match"],
                r["population"],
                r["quantity"],
                f"{r['day']:g}",
                r["stat"],
                f"{r['published']:.3g}",
                f"{r['ours']:.3g}",
            )
        console.print(t)
    console.print(f"report: {OUT / 'report.html'}  ({time.perf_counter() - t0:.1f} s)")
    console.print(f"[dim]{hpgsim.DISCLAIMER}[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
