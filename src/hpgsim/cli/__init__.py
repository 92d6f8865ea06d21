"""Command-line interface (DESIGN.md section 5). Thin: it parses arguments and calls the public API.

Bad input exits with code 2 and one paragraph naming the problem and the fix; an internal failure
exits with code 1. Tracebacks only with --debug.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hpgsim import __version__
from hpgsim.errors import HpgsimError, SpecError

if TYPE_CHECKING:
    from hpgsim.simulation import EngineName

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="hpgsim: a simulator of the male HPG axis and the drugs that act on it (research and education only).",
)
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


# Shared by the commands that simulate populations (validate, trial).
SchedulerOption = Annotated[
    str, typer.Option(help="'local' (--processes workers), 'processes:N' (Dask LocalCluster) or 'tcp://host:port' (Dask).")
]


class Units(StrEnum):
    conventional = "conventional"
    si = "si"


class EngineChoice(StrEnum):
    roadrunner = "roadrunner"
    jax = "jax"


def _run(debug: bool, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except HpgsimError as exc:
        if debug:
            traceback.print_exc()
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except typer.Exit:
        raise
    except Exception as exc:  # internal failure: say so, keep the traceback for --debug
        if debug:
            traceback.print_exc()
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}. "
            "Rerun with --debug for the traceback and report it.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    if version:
        console.print(f"hpgsim {__version__}")
        raise typer.Exit(0)


@app.command()
def simulate(
    protocol: Annotated[Path, typer.Argument(help="Protocol YAML file (DESIGN.md section 3).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (created; files inside are replaced).")],
    phenotype: Annotated[str, typer.Option(help="Phenotype of the virtual man (see `hpgsim phenotypes`).")] = "healthy",
    patient: Annotated[Path | None, typer.Option(help="Patient YAML file (name, phenotype, parameters).")] = None,
    n: Annotated[
        int | None, typer.Option("--n", help="Simulate N men drawn from the phenotype (default: its typical man).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed for --n.")] = 0,
    units: Annotated[Units, typer.Option(help="Output units: conventional (DESIGN.md) or si.")] = Units.conventional,
    engine: Annotated[EngineChoice, typer.Option(help="roadrunner (CPU, default) or jax (diffrax).")] = EngineChoice.roadrunner,
    step_hours: Annotated[float, typer.Option(help="Output spacing in hours (24 = daily rows).")] = 24.0,
    processes: Annotated[int, typer.Option(help="Worker processes for --n.")] = 2,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Simulate a protocol; write timeseries.csv, summary.json and plot.png to --out."""
    eng = cast("EngineName", engine.value)
    _run(debug, lambda: _simulate(protocol, out, phenotype, patient, n, seed, units.value, eng, step_hours, processes))


def _simulate(
    protocol_path: Path,
    out: Path,
    phenotype: str,
    patient_path: Path | None,
    n: int | None,
    seed: int,
    units: str,
    engine: EngineName,
    step_hours: float,
    processes: int,
) -> None:
    from hpgsim.observe.units import to_units
    from hpgsim.population.phenotypes import get_phenotype, load_patient, sample_patients
    from hpgsim.protocol.schema import load_protocol
    from hpgsim.report.plot import plot_courses
    from hpgsim.report.summary import baseline_vs_end
    from hpgsim.simulation import DISCLAIMER, simulate, simulate_population

    # validate every input before any work or any write
    if out.exists() and not out.is_dir():
        raise SpecError(f"--out {out}: exists and is not a directory. Choose a directory path.")
    if not (1.0 / 60.0 <= step_hours <= 24.0 * 365):
        raise SpecError(f"--step-hours {step_hours}: must be between 1/60 (one minute) and 8760.")
    if n is not None and not (1 <= n <= 100000):
        raise SpecError(f"--n {n}: must be between 1 and 100000.")
    if patient_path is not None and n is not None:
        raise SpecError("--patient and --n cannot be combined: --n draws men from --phenotype.")
    prot = load_protocol(protocol_path)
    man = load_patient(patient_path) if patient_path is not None else None
    if man is None:
        get_phenotype(phenotype)
    if man is not None and man.phenotype:
        phenotype = man.phenotype
    steps = prot.duration_h / step_hours
    if steps > 200000:
        raise SpecError(
            f"--step-hours {step_hours}: {steps:.0f} output rows over {prot.duration_days:g} days is too many; use a larger step."
        )

    meta: dict[str, Any] = {
        "hpgsim_version": __version__,
        "disclaimer": DISCLAIMER,
        "protocol": {"file": str(protocol_path), "name": prot.name, "duration_days": prot.duration_days},
        "engine": engine,
        "units": units,
    }
    tmp = Path(tempfile.mkdtemp(prefix=".hpgsim-", dir=out.parent if out.parent.exists() else None))
    try:
        if n is None:
            res = simulate(prot, patient=man, phenotype=phenotype, engine=engine, output_step_h=step_hours)
            df = to_units(res.observables, units)
            df.reset_index().to_csv(tmp / "timeseries.csv", index=False, float_format="%.6g")
            summary = dict(meta)
            summary.update(
                {
                    "patient": res.patient,
                    "phenotype": phenotype,
                    "model_digest": res.model_digest,
                    "baseline_vs_end": baseline_vs_end(df, units),
                    "flags": list(res.flags),
                }
            )
            title = f"{prot.name}: {res.patient}"
            plot_courses([(res.patient, df)], tmp / "plot.png", title, res.flags, units, footer=DISCLAIMER)
            _print_table(summary["baseline_vs_end"], title)
            for f in res.flags:
                err_console.print(f"[yellow]flag:[/] {escape(f)}", highlight=False, soft_wrap=True)
        else:
            men = sample_patients(phenotype, n, seed)
            results = _with_progress(
                lambda cb: simulate_population(
                    prot, men, engine=engine, processes=processes, output_step_h=step_hours, progress=cb
                ),
                n,
            )
            frames = []
            for r in results:
                d = to_units(r.observables, units).reset_index()
                d.insert(1, "patient", r.patient)
                frames.append(d)
            long = pd.concat(frames, ignore_index=True)
            long.to_csv(tmp / "timeseries.csv", index=False, float_format="%.6g")
            per_man = [baseline_vs_end(to_units(r.observables, units), units) for r in results]
            summary = dict(meta)
            summary.update(
                {
                    "phenotype": phenotype,
                    "n": n,
                    "seed": seed,
                    "model_digest": results[0].model_digest,
                    "population": _population_summary(per_man),
                    "flags": sorted({f for r in results for f in r.flags}),
                    "men_with_flags": {
                        f: sum(f in r.flags for r in results) for f in sorted({f for r in results for f in r.flags})
                    },
                }
            )
            med = long.drop(columns="patient").groupby("day").median()
            title = f"{prot.name}: median of {n} {phenotype} men (seed {seed})"
            plot_courses([("median", med)], tmp / "plot.png", title, summary["flags"], units, footer=DISCLAIMER)
            _print_population(summary["population"], title)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        out.mkdir(parents=True, exist_ok=True)
        for f in ("timeseries.csv", "summary.json", "plot.png"):
            os.replace(tmp / f, out / f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    console.print(f"wrote {out}/timeseries.csv, summary.json, plot.png")
    console.print(f"[dim]{DISCLAIMER}[/]")


def _with_progress(fn: Callable[[Callable[[int, int], None]], T], total: int) -> T:
    from rich.progress import Progress

    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("simulating", total=total)
        return fn(lambda done, _n: progress.update(task, completed=done))


def _population_summary(per_man: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for q in per_man[0]:
        row: dict[str, Any] = {"unit": per_man[0][q]["unit"]}
        for key in ("baseline", "end", "percent_change"):
            vals = np.array([m[q][key] for m in per_man if m[q][key] is not None], dtype=float)
            if vals.size:
                p5, p50, p95 = np.percentile(vals, [5, 50, 95])
                row[key] = {"median": float(f"{p50:.6g}"), "p5": float(f"{p5:.6g}"), "p95": float(f"{p95:.6g}")}
        out[q] = row
    return out


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:.4g}" if isinstance(x, (int, float)) else escape(str(x))


def _print_table(rows: dict[str, dict[str, Any]], title: str) -> None:
    t = Table(title=title)
    for c in ("quantity", "unit", "baseline", "end", "% change"):
        t.add_column(c, justify="left" if c in ("quantity", "unit") else "right")
    for q, r in rows.items():
        t.add_row(q, r["unit"], _fmt(r["baseline"]), _fmt(r["end"]), _fmt(r["percent_change"]))
    console.print(t)


def _print_population(rows: dict[str, dict[str, Any]], title: str) -> None:
    t = Table(title=title)
    for c in ("quantity", "unit", "baseline median", "end median", "% change median (5-95%)"):
        t.add_column(c, justify="left" if c in ("quantity", "unit") else "right")
    for q, r in rows.items():
        pc = r.get("percent_change")
        pct = f"{pc['median']:.3g} ({pc['p5']:.3g} to {pc['p95']:.3g})" if pc else "-"
        t.add_row(q, r["unit"], _fmt(r["baseline"]["median"]), _fmt(r["end"]["median"]), pct)
    console.print(t)


@app.command()
def drugs(debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False) -> None:
    """List the drugs with their routes, dose units, parameters and sources."""

    def run() -> None:
        from hpgsim.model.spec import load_model

        spec = load_model()
        for d in spec.drugs.values():
            t = Table(title=f"{d.name}: {d.drug_class}", title_justify="left", show_lines=False)
            t.add_column("parameter")
            t.add_column("value", justify="right")
            t.add_column("unit")
            t.add_column("source")
            for p in spec.parameters.values():
                if p.owner == d.name:
                    t.add_row(p.name, f"{p.value:g}", escape(p.unit), escape(p.source))
            console.print(t)
            console.print(
                escape(
                    f"  target: {d.target}; dose unit: {d.dose_unit}; routes: {', '.join(d.routes)} (default {d.default_route}); "
                    f"validated doses {d.studied_min:g}-{d.studied_max:g} {d.dose_unit} ({d.studied_source}); outputs: "
                    f"{', '.join(d.concentration_outputs) or 'serum testosterone'}"
                ),
                highlight=False,
            )
            if d.note:
                console.print(f"  note: {escape(d.note)}", highlight=False)
            if d.caveat:
                console.print(f"  caveat (flagged on every result that uses it): {escape(d.caveat)}", highlight=False)
            console.print()

    _run(debug, run)


@app.command()
def phenotypes(
    n: Annotated[int, typer.Option("--n", help="Men drawn per phenotype for the baseline distribution.")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """List the phenotypes with their baseline labs (typical man, and median and 5-95% over --n men)."""

    def run() -> None:
        from hpgsim.population.phenotypes import get_phenotype, phenotype_names, sample_patients, typical_patient
        from hpgsim.simulation import simulate_population

        quantities = [
            "total_testosterone",
            "free_testosterone",
            "estradiol",
            "te_ratio",
            "lh",
            "fsh",
            "shbg",
            "inhibin_b",
            "sperm_concentration",
        ]
        for name in phenotype_names():
            ph = get_phenotype(name)
            men = [typical_patient(name)] + (sample_patients(name, n, seed) if n > 0 else [])
            res = simulate_population({"duration": "1 day"}, men, processes=2)
            base = pd.DataFrame([r.observables.iloc[0] for r in res])
            t = Table(title=escape(f"{name} ({ph.status}): {ph.description}"), title_justify="left")
            for c in ("quantity", "unit", "typical man", f"median of {n}", "5-95%"):
                t.add_column(c, justify="left" if c in ("quantity", "unit") else "right")
            from hpgsim.observe.units import unit_of

            for q in quantities:
                col = base[q].to_numpy()
                pop = col[1:]
                rng = f"{np.percentile(pop, 5):.3g} - {np.percentile(pop, 95):.3g}" if pop.size else "-"
                med = f"{np.median(pop):.3g}" if pop.size else "-"
                t.add_row(q, unit_of(q), f"{col[0]:.3g}", med, rng)
            console.print(t)
            console.print(
                escape(
                    f"  age {ph.age['median']:g} y (sd {ph.age.get('sd', 0):g}), BMI {ph.bmi['median']:g} kg/m2; "
                    f"source: {ph.source}"
                ),
                highlight=False,
            )
            for g in ph.subgroups:
                changes = ", ".join(f"{k} x{f:g}" for k, f in g.factors.items())
                line = f"  subgroup {g.name}: {100 * g.share:g}% of the men ({changes}); source: {g.source}"
                console.print(escape(line), highlight=False)
            console.print()

    _run(debug, run)


@app.command()
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Study files or folders (default: the packaged study set).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write one result per observation (SCHEMA.md).")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write an HTML report (bands, points, scores).")] = None,
    n: Annotated[int, typer.Option("--n", help="Virtual men per arm.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    processes: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    scheduler: SchedulerOption = "local",
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Simulate published studies with virtual cohorts; write per-observation results and print the score.

    Unreadable files, arms or observations are listed and left out, the rest is written; exit code 2.
    """

    def run() -> None:
        from hpgsim.distributed import parse_scheduler
        from hpgsim.validation.run import run_study
        from hpgsim.validation.score import score_study, summarize
        from hpgsim.validation.studies import in_file_order, load_studies_leniently, packaged_study_dir, unsimulated_rows

        if n < 2:
            raise SpecError(f"--n {n}: a cohort needs at least 2 men (default 200).")
        parse_scheduler(scheduler)  # a bad --scheduler fails before any work
        if json_out is not None and json_out.exists() and json_out.is_dir():
            raise SpecError(f"--json {json_out}: is a directory; give a file path.")
        if report is not None and report.exists() and report.is_dir():
            raise SpecError(f"--report {report}: is a directory; give a file path such as report.html.")
        # An invalid file, arm or observation is skipped and listed, not fatal: a folder of files hpgsim
        # has never seen should not lose every study to one it cannot read (exit code 2 at the end).
        studies, problems, notes = load_studies_leniently(list(paths) if paths else [packaged_study_dir()])
        for note in notes:
            err_console.print(f"[bold]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
        for p in problems:
            err_console.print(f"[bold yellow]invalid input:[/] {escape(p)}", highlight=False, soft_wrap=True)
        scored: list[dict[str, Any]] = []
        bands: dict[str, dict[Any, Any]] = {}
        for i, st in enumerate(studies):
            err_console.print(f"[{i + 1}/{len(studies)}] {st.id}", highlight=False)
            bands[st.id] = {}
            try:
                rows = run_study(
                    st, n=n, seed=seed, processes=processes, bands=bands[st.id] if report else None, scheduler=scheduler
                )
                study_rows = score_study(st, rows)
                for r in study_rows:  # an observation the arm's model does not output
                    if "error" in r:
                        problems.append(r["error"])
                        err_console.print(f"[bold yellow]not simulated:[/] {escape(r['error'])}", highlight=False, soft_wrap=True)
            except Exception as exc:  # one study's failure (e.g. an impossible filter) does not stop the others
                if debug:
                    raise
                reason = str(exc) if isinstance(exc, HpgsimError) else f"internal error: {type(exc).__name__}: {exc}"
                problems.append(f"{st.source}: not simulated: {reason}")
                err_console.print(f"[bold yellow]not simulated:[/] {escape(problems[-1])}", highlight=False, soft_wrap=True)
                study_rows = unsimulated_rows(st, reason)
            scored.extend(in_file_order(st, study_rows))
        simulated = [r for r in scored if "error" not in r]
        summary = summarize(simulated)
        t = Table(title=f"validation: {len(studies)} studies, {summary['observations']} observations, {n} men per arm")
        for c in ("study", "arm", "quantity", "stat", "day", "observed", "simulated", "within"):
            t.add_column(c)
        for r in scored:
            t.add_row(
                escape(r["study"]),
                escape(r["arm"][:40]),
                escape(str(r["quantity"])),
                escape(str(r["stat"])),
                _fmt(r["day"]),
                _fmt(r["observed"]),
                _fmt(r["simulated"]),
                "not simulated" if "error" in r else "yes" if r["within"] else "NO",
            )
        Console(width=max(console.width, 150)).print(t)
        console.print(
            f"within: {summary['within']}/{summary['observations']}; directions right: "
            f"{summary['directions_right']}/{summary['directions']}",
            highlight=False,
        )
        if len(simulated) < len(scored):
            console.print(
                f"not simulated (invalid input, listed above): {len(scored) - len(simulated)} observations", highlight=False
            )
        if json_out is not None:
            fields = ("study", "arm", "quantity", "unit", "day", "stat", "observed", "simulated", "simulated_ci95", "n_virtual")
            payload = [{k: r[k] for k in (*fields, "error") if k in r} for r in scored]
            tmp = json_out.with_name(f".{json_out.name}.tmp")
            tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, json_out)
            console.print(f"wrote {json_out}")
        if report is not None:
            from hpgsim.report.validation_report import write_report
            from hpgsim.simulation import DISCLAIMER

            title = f"hpgsim validation: {len(studies)} studies, {n} virtual men per arm, seed {seed}"
            write_report(report, scored, bands, summary, title, DISCLAIMER)
            console.print(f"wrote {report}")
        if problems:
            raise SpecError(
                f"{len(problems)} problem(s) in the input (listed above); the other observations were validated"
                + (" and written." if json_out is not None or report is not None else ".")
                + " Fix the files named (data/studies/SCHEMA.md) and rerun."
            )

    _run(debug, run)


# Commands defined in their own modules (hpgsim/cli/<name>.py, each decorating with @app.command()
# or adding a sub-app). One import line per module, here, after `app` and `_run` exist.
# fmt: off
# isort: off
# (register below)
from hpgsim.cli import calibrate as _calibrate  # noqa: E402,F401
from hpgsim.cli import export as _export  # noqa: E402,F401
from hpgsim.cli import trial as _trial  # noqa: E402,F401
from hpgsim.cli import sensitivity as _sensitivity  # noqa: E402,F401
from hpgsim.cli import fit as _fit  # noqa: E402,F401
# isort: on
# fmt: on


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
