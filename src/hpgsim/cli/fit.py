"""`hpgsim fit LABS.yaml --out FIT` and `hpgsim predict --fit FIT --protocol P.yaml --out DIR` (docs/fit.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hpgsim.cli import _run, app, console, err_console


@app.command("fit")
def fit_command(
    labs: Annotated[Path, typer.Argument(help="Labs YAML file (docs/fit.md).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (written atomically).")],
    fast: Annotated[
        bool, typer.Option("--fast", help="MAP + Laplace approximation instead of NUTS (seconds; no R-hat).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    warmup: Annotated[int, typer.Option(help="NUTS warmup iterations per chain.")] = 200,
    samples: Annotated[int, typer.Option(help="NUTS draws per chain.")] = 200,
    chains: Annotated[int, typer.Option(help="NUTS chains (run one after the other).")] = 2,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Fit a man's parameters to his labs (Bayesian; phenotype prior); write fit.json, draws and the posterior predictive."""

    def run() -> None:
        from hpgsim.fit import fit

        err_console.print("fitting (the first run compiles the model: ~10-30 s) ...", highlight=False)
        res = fit(labs, out, fast=fast, seed=seed, num_warmup=warmup, num_samples=samples, num_chains=chains)
        s = res.summary
        t = Table(title=f"{s['patient']['name']}: posterior ({s['method']}), prior '{s['patient']['phenotype']}'")
        for c in ("parameter", "unit", "median", "5%", "95%", "prior 5-95%", "sd ratio"):
            t.add_column(c, justify="left" if c in ("parameter", "unit") else "right", no_wrap=c == "parameter")
        for name, p in s["parameters"].items():
            t.add_row(
                name,
                p["unit"],
                f"{p['median']:.3g}",
                f"{p['p5']:.3g}",
                f"{p['p95']:.3g}",
                f"{p['prior_p5']:.3g} - {p['prior_p95']:.3g}",
                f"{p['sd_ratio']:.2f}",
            )
        Console(width=max(console.width, 110)).print(t)
        d = s["diagnostics"]
        if s["method"] == "nuts":
            console.print(
                f"NUTS: {d['num_chains']} chains x {d['num_samples']} draws; divergences {d['divergences']}, "
                f"max R-hat {d['max_r_hat']:.3f}, min ESS {d['min_ess']:.0f}; {s['elapsed_s']:.1f} s",
                highlight=False,
            )
        else:
            console.print(f"{d['method']}; converged: {d['converged']}; {s['elapsed_s']:.1f} s", highlight=False)
        for w in s["warnings"]:
            err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
        console.print(f"wrote {out}/fit.json, draws.parquet, posterior_predictive.csv, posterior_predictive.png")
        console.print(f"[dim]{s['disclaimer']}[/]")

    _run(debug, run)


@app.command("predict")
def predict_command(
    fit_dir: Annotated[Path, typer.Option("--fit", help="A directory written by `hpgsim fit`.")],
    protocol: Annotated[Path, typer.Option("--protocol", help="Protocol YAML file (DESIGN.md section 3).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (written atomically).")],
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            help="Target as quantity OP value [unit] @ time, e.g. 'sperm_concentration>=15@120d', 'estradiol<10@any' "
            "(repeatable; default: sperm >= 15 M/mL at day 119 (17 weeks, ~4 months), "
            "E2 < 10 pg/mL at any time, T >= 350 ng/dL at 90 d).",
        ),
    ] = None,
    draws: Annotated[int, typer.Option("--draws", help="Posterior draws to simulate.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    processes: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Predict a fitted man's course under a protocol: bands.csv, fan.png and target probabilities (prediction.json)."""

    def run() -> None:
        from hpgsim.fit import predict

        pred = predict(fit_dir, protocol, out, n_draws=draws, targets=target, seed=seed, processes=processes)
        s = pred.summary
        t = Table(title=f"{s['patient']['name']} on {s['protocol']['name']} ({s['n_draws']} posterior draws)")
        for c in ("target", "probability", "model value only", "read as"):
            t.add_column(c, justify="left" if c in ("target", "read as") else "right", no_wrap=c == "target")
        for r in pred.targets:
            how = "morning lab, with noise" if r["day"] is not None else "model value, any day"
            t.add_row(r["target"], f"{r['probability']:.2f}", f"{r['probability_model_value']:.2f}", how)
        console.print(t)
        for n in s["notes"]:
            err_console.print(f"note: {escape(n)}", highlight=False, soft_wrap=True)
        for f in s["flags"]:
            err_console.print(
                f"[yellow]flag ({s['men_with_flags'][f]}/{s['n_draws']} draws):[/] {f}", highlight=False, soft_wrap=True
            )
        console.print(f"wrote {out}/prediction.json, bands.csv, fan.png")
        console.print(f"[dim]{s['disclaimer']}[/]")

    _run(debug, run)
