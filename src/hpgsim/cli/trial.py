"""`hpgsim trial TRIAL.yaml --out DIR`: run a virtual trial (docs/trials.md) and print its tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hpgsim.cli import SchedulerOption, _run, app, console, err_console

if TYPE_CHECKING:
    from hpgsim.trial.run import TrialResult


@app.command("trial")
def trial_command(
    trial_file: Annotated[Path, typer.Argument(help="Trial YAML file (docs/trials.md).")],
    out: Annotated[
        Path, typer.Option("--out", help="Output directory (written atomically; an earlier trial output is replaced).")
    ],
    n: Annotated[int | None, typer.Option("--n", help="Men per arm (overrides n_per_arm).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides the file's seed).")] = None,
    processes: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    scheduler: SchedulerOption = "local",
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Run a virtual trial: endpoints, responder rates, subgroups, results.parquet, plots and report.html in --out."""

    def run() -> None:
        from hpgsim.distributed import parse_scheduler
        from hpgsim.errors import SpecError
        from hpgsim.simulation import DISCLAIMER
        from hpgsim.trial.run import run_trial
        from hpgsim.trial.schema import load_trial

        if processes < 1:
            raise SpecError(f"--processes {processes}: must be at least 1.")
        parse_scheduler(scheduler)  # a bad --scheduler fails before any work
        t = load_trial(trial_file).with_overrides(n, seed)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("simulating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        ) as progress:
            task = progress.add_task("men", total=t.n_per_arm * len(t.arms))
            res = run_trial(
                t,
                out=out,
                processes=processes,
                progress=lambda done, _n: progress.update(task, completed=done),
                scheduler=scheduler,
            )
        print_result(res, console)
        console.print(f"wrote {out}/ (report.html, results.parquet, summary.json, tables, plots)")
        console.print(f"[dim]{DISCLAIMER}[/]")

    _run(debug, run)


def _g(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}"


def _ci(lo: Any, hi: Any) -> str:
    return "-" if lo is None or not np.isfinite(lo) else f"{_g(lo)} to {_g(hi)}"


def print_result(res: TrialResult, out: Console | None = None, subgroups: bool = True) -> None:
    """Print the endpoint, responder and subgroup tables and the flags."""
    c = out or Console(width=max(console.width, 150))
    t = Table(
        title=f"{res.trial.name}: endpoints ({res.trial.n_per_arm} men per arm, seed {res.trial.seed})", title_justify="left"
    )
    for col in ("endpoint", "unit", "arm", "estimate (95% CI)", "vs control (95% CI)"):
        t.add_column(col, justify="left" if col in ("endpoint", "unit", "arm") else "right")
    for _, r in res.endpoints.iterrows():
        diff = "" if r["control"] else f"{_g(r['diff_vs_control'])} ({_ci(r['diff_ci_low'], r['diff_ci_high'])})"
        t.add_row(r["endpoint"], str(r["unit"]), r["arm"], f"{_g(r['estimate'])} ({_ci(r['ci_low'], r['ci_high'])})", diff)
    c.print(t)
    if len(res.responders):
        t = Table(title="responder rates (Wilson 95% CI; difference: Newcombe)", title_justify="left")
        for col in ("responder", "arm", "n", "rate (95% CI)", "vs control (95% CI)"):
            t.add_column(col, justify="left" if col in ("responder", "arm") else "right")
        for _, r in res.responders.iterrows():
            name = r["responder"] + (" [safety]" if r["safety"] else "")
            diff = (
                ""
                if r["control"]
                else f"{100 * r['diff_vs_control']:+.1f} pts ({_pct(r['diff_ci_low'])} to {_pct(r['diff_ci_high'])})"
            )
            t.add_row(name, r["arm"], str(r["n"]), f"{100 * r['rate']:.1f}% ({_pct(r['ci_low'])} to {_pct(r['ci_high'])})", diff)
        c.print(t)
    if subgroups and len(res.subgroups):
        sub = res.subgroups[res.subgroups["kind"] == "responder"]
        t = Table(
            title="responder rates by subgroup (all endpoints by subgroup: subgroups.csv, report.html)", title_justify="left"
        )
        for col in ("subgroup", "level", "responder", "arm", "n", "rate (95% CI)", "vs control (95% CI)"):
            t.add_column(col, justify="left" if col in ("subgroup", "level", "responder", "arm") else "right")
        for _, r in sub.iterrows():
            rate = f"{_pct(r['estimate'])} ({_pct(r['ci_low'])} to {_pct(r['ci_high'])})" if r["n"] else "-"
            diff = (
                f"{100 * r['diff_vs_control']:+.1f} pts ({_pct(r['diff_ci_low'])} to {_pct(r['diff_ci_high'])})"
                if not r["control"] and np.isfinite(r["diff_vs_control"])
                else ""
            )
            t.add_row(r["subgroup"], r["level"], r["name"], r["arm"], str(r["n"]), rate, diff)
        c.print(t)
    for f in res.flags:
        c.print(f"[yellow]flag:[/] {escape(f)}", highlight=False, soft_wrap=True)


def _pct(x: Any) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"
