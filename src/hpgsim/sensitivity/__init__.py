"""Global sensitivity of one output to a phenotype's variable parameters (docs/sensitivity.md).

Methods (SALib): Morris elementary effects (default; mu*, sigma, with bootstrap CIs on mu*) or Sobol
indices (S1, ST with CIs). Parameters are those with a between-person CV in the phenotype and a role in
the protocol's model; each ranges over the central 90% (5th to 95th percentile, adjustable) of its
log-normal and is sampled uniformly in log space. The output is a quantity's underlying (noise-free)
value at a day, as a level or as the % change from day 0.

The sampling and ranking code (:func:`sample`, :func:`rank`) is independent of the model, so it can be
checked on an analytic function with a known ranking (tests/test_sensitivity.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from hpgsim.errors import SpecError

Method = Literal["morris", "sobol"]
Statistic = Literal["level", "percent_change"]
Z95 = 1.6448536269514722  # standard-normal 95th percentile


@dataclass(frozen=True)
class Problem:
    """Parameter names and bounds in the sampled space (here: log of the parameter value)."""

    names: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]

    def salib(self) -> dict[str, Any]:
        return {"num_vars": len(self.names), "names": list(self.names), "bounds": [list(b) for b in self.bounds]}


def sample(method: Method, problem: Problem, n: int, seed: int) -> np.ndarray:
    """Design points, shape (n_runs, n_params): Morris n trajectories (n (D+1) runs) or Sobol base n (n (2D+2) runs)."""
    if method == "morris":
        from SALib.sample import morris

        return np.asarray(morris.sample(problem.salib(), n, num_levels=4, seed=seed))
    if method == "sobol":
        from SALib.sample import sobol

        return np.asarray(sobol.sample(problem.salib(), n, calc_second_order=False, seed=seed))
    raise SpecError(f"--method {method!r}: use 'morris' (default) or 'sobol'.")


def rank(method: Method, problem: Problem, X: np.ndarray, Y: np.ndarray, seed: int) -> pd.DataFrame:
    """Sensitivity indices, one row per parameter, most influential first.

    Morris columns: mu_star, mu_star_ci95 (half-width), sigma, mu; Sobol: S1, S1_ci95, ST, ST_ci95.
    A column `importance` (mu* or ST) orders the rows.
    """
    import warnings

    y = np.asarray(Y, dtype=float)
    if not np.all(np.isfinite(y)):
        raise SpecError("the output is not finite for some parameter sets; choose another output or day.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SALib warns on constant outputs and small samples
        if method == "morris":
            from SALib.analyze import morris

            r = morris.analyze(problem.salib(), np.asarray(X), y, num_resamples=200, num_levels=4, seed=seed)
            df = pd.DataFrame(
                {
                    "parameter": list(problem.names),
                    "mu_star": r["mu_star"],
                    "mu_star_ci95": r["mu_star_conf"],
                    "sigma": r["sigma"],
                    "mu": r["mu"],
                }
            )
            df["importance"] = df["mu_star"]
        else:
            from SALib.analyze import sobol

            r = sobol.analyze(problem.salib(), y, calc_second_order=False, num_resamples=200, seed=seed)
            df = pd.DataFrame(
                {"parameter": list(problem.names), "S1": r["S1"], "S1_ci95": r["S1_conf"], "ST": r["ST"], "ST_ci95": r["ST_conf"]}
            )
            df["importance"] = df["ST"]
    df = df.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df


def analyse_function(
    f: Callable[[np.ndarray], np.ndarray], problem: Problem, method: Method = "morris", n: int = 20, seed: int = 0
) -> pd.DataFrame:
    """Rank the inputs of any vectorised function `f(X) -> Y` (X: (runs, params)), e.g. an analytic test case."""
    X = sample(method, problem, n, seed)
    return rank(method, problem, X, f(X), seed)


@dataclass
class SensitivityResult:
    """Indices (table), the design and outputs, and what was asked."""

    table: pd.DataFrame
    X: np.ndarray
    Y: np.ndarray
    problem: Problem
    settings: dict[str, Any] = field(default_factory=dict)

    def write(self, out: str | Path) -> Path:
        """Write sensitivity.csv, sensitivity.png and summary.json to `out` (atomically)."""
        return _write(self, Path(out))


def parameter_problem(
    phenotype: str, protocol: Any, lo_q: float = 0.05, hi_q: float = 0.95, parameters: list[str] | None = None
) -> Problem:
    """The phenotype's variable parameters that the protocol's model uses, with log-space bounds."""
    from scipy.stats import norm

    from hpgsim.population.phenotypes import get_phenotype
    from hpgsim.simulation import as_protocol, model_for

    if not (0 < lo_q < hi_q < 1):
        raise SpecError(f"range quantiles {lo_q}, {hi_q}: need 0 < low < high < 1 (default 0.05, 0.95).")
    ph = get_phenotype(phenotype)
    spec = model_for(as_protocol(protocol))
    names = sorted(k for k, cv in ph.cv.items() if cv > 0 and k in spec.parameters)
    if parameters:
        unknown = [p for p in parameters if p not in names]
        if unknown:
            raise SpecError(
                f"--parameter {unknown}: not a variable parameter of {phenotype} under this protocol; "
                f"choose from {', '.join(names)}."
            )
        names = [p for p in names if p in parameters]
    if not names:
        raise SpecError(f"phenotype {phenotype!r} has no variable parameters (CVs) used by this protocol's model.")
    zl, zh = float(norm.ppf(lo_q)), float(norm.ppf(hi_q))
    bounds = []
    for k in names:
        s = float(np.sqrt(np.log1p(ph.cv[k] ** 2)))
        mu = float(np.log(ph.typical[k]))
        bounds.append((mu + zl * s, mu + zh * s))
    return Problem(tuple(names), tuple(bounds))


def sensitivity(
    phenotype: str,
    protocol: Any,
    output: str,
    day: float,
    statistic: Statistic = "level",
    method: Method = "morris",
    n: int = 10,
    seed: int = 0,
    processes: int = 2,
    out: str | Path | None = None,
    lo_q: float = 0.05,
    hi_q: float = 0.95,
    parameters: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SensitivityResult:
    """Rank a phenotype's parameters by their influence on `output` at `day` under `protocol`.

    Args:
        phenotype: phenotype name (its typical man, with the CV-carrying parameters varied).
        protocol: protocol file, mapping or Protocol.
        output: a canonical quantity (DESIGN.md section 2).
        day: day of the output (0 = baseline .. the protocol's duration).
        statistic: "level" (value at day, canonical unit) or "percent_change" (vs the same man's day 0).
        method: "morris" (n trajectories, n (D+1) simulations) or "sobol" (base n, n (D+2) simulations).
        n: trajectories (Morris) or base sample size (Sobol; a power of 2).
        out: if given, write sensitivity.csv, sensitivity.png and summary.json there.

    Raises:
        SpecError: bad phenotype, output, day, statistic, method or n.
    """
    from hpgsim.model.spec import load_model
    from hpgsim.population.phenotypes import Patient, get_phenotype
    from hpgsim.simulation import as_protocol, simulate_population

    prot = as_protocol(protocol)
    if output not in load_model().observable_names:
        import difflib

        close = difflib.get_close_matches(output, load_model().observable_names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SpecError(f"--output {output!r}: unknown quantity.{hint} Use a canonical name (DESIGN.md section 2).")
    if not (0 <= day <= prot.duration_days):
        raise SpecError(f"--day {day:g}: must be between 0 and the protocol's duration ({prot.duration_days:g} days).")
    if statistic not in ("level", "percent_change"):
        raise SpecError(f"--statistic {statistic!r}: use 'level' or 'percent_change'.")
    if statistic == "percent_change" and day == 0:
        raise SpecError("--day 0 with --statistic percent_change: a change needs a later day.")
    if method not in ("morris", "sobol"):
        raise SpecError(f"--method {method!r}: use 'morris' (default) or 'sobol'.")
    if not (2 <= n <= 10000):
        raise SpecError(f"--n {n}: must be between 2 and 10000.")
    if method == "sobol" and n & (n - 1):
        raise SpecError(f"--n {n}: Sobol sampling needs a power of 2 (e.g. 64, 128, 256).")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise SpecError(f"--out {out}: exists and is not a directory. Choose a directory path.")
    ph = get_phenotype(phenotype)
    problem = parameter_problem(phenotype, prot, lo_q, hi_q, parameters)
    X = sample(method, problem, n, seed)
    men = []
    for i, row in enumerate(X):
        params = dict(ph.typical)
        params.update({k: float(np.exp(v)) for k, v in zip(problem.names, row, strict=True)})
        men.append(Patient(name=f"{phenotype} design point {i}", parameters=params, phenotype=phenotype))
    step = 24.0 if prot.duration_h > 48 else 1.0
    results = simulate_population(prot, men, processes=processes, output_step_h=step, progress=progress)
    y = []
    for r in results:
        s = r.observables[output]
        v = float(np.interp(day, s.index.to_numpy(), s.to_numpy()))
        if statistic == "percent_change":
            b = float(s.iloc[0])
            v = 100.0 * (v / b - 1.0) if b > 0 else float("nan")
        y.append(v)
    Y = np.asarray(y)
    table = rank(method, problem, X, Y, seed)
    typical = dict(zip(problem.names, [ph.typical[k] for k in problem.names], strict=True))
    table.insert(2, "typical", table["parameter"].map(typical))
    table.insert(
        3, "low", table["parameter"].map(dict(zip(problem.names, [float(np.exp(b[0])) for b in problem.bounds], strict=True)))
    )
    table.insert(
        4, "high", table["parameter"].map(dict(zip(problem.names, [float(np.exp(b[1])) for b in problem.bounds], strict=True)))
    )
    settings = {
        "phenotype": phenotype,
        "protocol": prot.name,
        "output": output,
        "day": day,
        "statistic": statistic,
        "method": method,
        "n": n,
        "runs": len(X),
        "seed": seed,
        "range_quantiles": [lo_q, hi_q],
        "output_summary": {"min": float(np.min(Y)), "median": float(np.median(Y)), "max": float(np.max(Y))},
    }
    res = SensitivityResult(table, X, Y, problem, settings)
    if out is not None:
        res.write(out)
    return res


def _write(res: SensitivityResult, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from importlib.metadata import version

    import matplotlib.pyplot as plt

    __version__ = version("hpgsim")
    from hpgsim.simulation import DISCLAIMER

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        t = res.table
        t.to_csv(tmp / "sensitivity.csv", index=False, float_format="%.6g")
        s = res.settings
        err_col = "mu_star_ci95" if s["method"] == "morris" else "ST_ci95"
        label = "mu* (Morris)" if s["method"] == "morris" else "total-order index ST (Sobol)"
        fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(t) + 1.6))
        ax.barh(t["parameter"][::-1], t["importance"][::-1], xerr=t[err_col][::-1], color="steelblue", capsize=2)
        ax.set_xlabel(label)
        unit = "%" if s["statistic"] == "percent_change" else ""
        ax.set_title(
            f"{s['output']} ({s['statistic']}{' ' + unit if unit else ''}) on day {s['day']:g}: "
            f"{s['phenotype']}, {s['protocol']}",
            fontsize=9,
        )
        ax.grid(axis="x", alpha=0.3)
        fig.text(0.01, 0.005, DISCLAIMER, fontsize=6, color="0.4")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        fig.savefig(tmp / "sensitivity.png", dpi=90)
        plt.close(fig)
        summary = {
            "kind": "hpgsim sensitivity",
            "hpgsim_version": __version__,
            "disclaimer": DISCLAIMER,
            **s,
            "table": [
                {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in t.to_dict(orient="records")
            ],
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        out.mkdir(exist_ok=True)
        for f in ("sensitivity.csv", "sensitivity.png", "summary.json"):
            os.replace(tmp / f, out / f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


__all__ = ["Problem", "SensitivityResult", "analyse_function", "parameter_problem", "rank", "sample", "sensitivity"]
