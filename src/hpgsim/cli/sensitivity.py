"""`hpgsim sensitivity`: rank a phenotype's parameters by their influence on one output (docs/sensitivity.md)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hpgsim.cli import _run, app, console, err_console


class MethodChoice(StrEnum):
    morris = "morris"
    sobol = "sobol"


class StatisticChoice(StrEnum):
    level = "level"
    percent_change = "percent_change"


@app.command("sensitivity")
def sensitivity_command(
    protocol: Annotated[Path, typer.Option("--protocol", help="Protocol YAML file.")],
    output: Annotated[str, typer.Option("--output", help="Canonical quantity, e.g. sperm_concentration.")],
    day: Annotated[float, typer.Option("--day", help="Day of the output (0 .. the protocol's duration).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory: sensitivity.csv, sensitivity.png, summary.json.")],
    phenotype: Annotated[str, typer.Option("--phenotype", help="Phenotype whose parameter CVs set the ranges.")] = "healthy",
    statistic: Annotated[
        StatisticChoice, typer.Option(help="level (value at day) or percent_change (vs day 0).")
    ] = StatisticChoice.level,
    method: Annotated[MethodChoice, typer.Option(help="morris (default) or sobol.")] = MethodChoice.morris,
    n: Annotated[
        int, typer.Option("--n", help="Morris trajectories (n (D+1) runs) or Sobol base size (power of 2, n (D+2) runs).")
    ] = 10,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    processes: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Global sensitivity (SALib Morris or Sobol) of one output at one day to the phenotype's variable parameters."""

    def run() -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from hpgsim.protocol.schema import load_protocol
        from hpgsim.sensitivity import sensitivity
        from hpgsim.simulation import DISCLAIMER

        prot = load_protocol(protocol)
        with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), console=err_console, transient=True) as bar:
            task = bar.add_task("runs", total=None)
            res = sensitivity(
                phenotype,
                prot,
                output,
                day,
                statistic=statistic.value,  # type: ignore[arg-type]
                method=method.value,  # type: ignore[arg-type]
                n=n,
                seed=seed,
                processes=processes,
                out=out,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        s = res.settings
        t = Table(
            title=f"{s['output']} ({s['statistic']}) on day {s['day']:g}: {s['phenotype']}, {s['protocol']}; "
            f"{s['method']}, {s['runs']} runs",
            title_justify="left",
        )
        cols = (
            ["rank", "parameter", "typical", "low", "high", "mu_star", "mu_star_ci95", "sigma"]
            if s["method"] == "morris"
            else ["rank", "parameter", "typical", "low", "high", "S1", "S1_ci95", "ST", "ST_ci95"]
        )
        for c in cols:
            t.add_column(c, justify="left" if c == "parameter" else "right")
        for _, r in res.table.iterrows():
            t.add_row(*[str(r[c]) if c in ("rank", "parameter") else f"{r[c]:.3g}" for c in cols])
        Console(width=max(console.width, 130)).print(t)
        console.print(f"wrote {out}/sensitivity.csv, sensitivity.png, summary.json")
        console.print(f"[dim]{DISCLAIMER}[/]")

    _run(debug, run)
