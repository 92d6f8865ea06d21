"""Personal fit and prediction: ``hpgsim.fit(labs)`` and ``hpgsim.predict(fit, protocol)`` (docs/fit.md)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpgsim.errors import FitError, HpgsimError
from hpgsim.fit.inference import QUANTITIES, Problem, Samples, batch_labs, build_problem, obs_sigma, prior_of, untreated_spec
from hpgsim.fit.labs import Labs, as_labs
from hpgsim.population.phenotypes import get_phenotype
from hpgsim.units import canonical_unit

# Visits after the last dose count as untreated again after these washouts (hormones: weeks; semen:
# a full spermatogenic cycle plus epididymal transit, ~64-74 + ~12 days, rounded up).
WASHOUT_DAYS_HORMONES = 56.0
WASHOUT_DAYS_SEMEN = 112.0
NOT_PINNED_RATIO = 0.8  # posterior sd / prior sd (log scale) above this: "the data cannot pin down X"
PREDICTIVE_DRAWS = 400
FIT_FILES = ("fit.json", "draws.parquet", "posterior_predictive.csv", "posterior_predictive.png")
PREDICT_FILES = ("prediction.json", "bands.csv", "fan.png")


def _entry() -> None:
    """Entry-point settings: float64, the persistent compilation cache, and (when the caller has not
    set XLA_FLAGS and JAX has not started yet) XLA's backend optimisation level 0: it halved the
    compile time of the fit (which dominates a first fit) at no measurable cost per evaluation
    (docs/fit.md). Set XLA_FLAGS yourself to opt out."""
    import sys

    if "XLA_FLAGS" not in os.environ and not _jax_started(sys.modules):
        os.environ["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
    from hpgsim.engine.jax_engine import enable_compilation_cache, enable_float64

    enable_float64()
    enable_compilation_cache()


def _jax_started(modules: dict[str, Any]) -> bool:
    xb = modules.get("jax._src.xla_bridge")
    return bool(getattr(xb, "_backends", None))


def steady_visits(labs: Labs) -> tuple[list[int], list[str]]:
    """Indices of the visits at an untreated steady state, and notes on how each was classified.

    Raises:
        FitError: a visit falls during treatment or within the washout after it.
    """
    notes: list[str] = []
    prot = labs.protocol
    times = [t for r in prot.regimens for t in r.times_h] if prot is not None else []
    if not times:
        return list(range(len(labs.visits))), notes
    first, last = min(times) / 24.0, max(times) / 24.0
    drugs = ", ".join(sorted({r.drug for r in prot.regimens})) if prot else ""
    out = []
    for i, v in enumerate(labs.visits):
        if v.day < first:
            out.append(i)
            continue
        semen = any(o.quantity == "sperm_concentration" for o in v.observations)
        washout = WASHOUT_DAYS_SEMEN if semen else WASHOUT_DAYS_HORMONES
        if v.day >= last + washout:
            out.append(i)
            notes.append(
                f"visit {v.label}: {v.day - last:g} days after the last dose of {drugs}: treated as untreated steady state"
            )
            continue
        raise FitError(
            f"{labs.source}, key 'visits[{i}]' ({v.label}, day {v.day:g}): drawn during treatment with {drugs} "
            f"(doses from day {first:g} to {last:g}) or within the washout after it ({washout:g} days"
            f"{' for semen' if semen else ''}). hpgsim fit uses labs at an untreated steady state only: list visits "
            "before day 0 of the protocol (negative days) or after the washout, and predict the treatment with "
            "`hpgsim predict`."
        )
    return out, notes


@dataclass
class FitResult:
    """A personal fit (what ``hpgsim fit`` writes).

    Attributes:
        summary: everything in fit.json (posterior summaries, diagnostics, warnings, labs echo, ...).
        draws: posterior draws, one row per draw: ``chain``, ``draw`` and one column per fitted
            parameter (model units).
        predictive: posterior predictive of each observed lab (observed, median, 5%, 95%, within_90).
    """

    summary: dict[str, Any]
    draws: pd.DataFrame
    predictive: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def warnings(self) -> list[str]:
        return list(self.summary["warnings"])

    @property
    def parameters(self) -> pd.DataFrame:
        """Posterior summary per fitted parameter (median, p5, p95, prior median/p5/p95, sd_ratio)."""
        return pd.DataFrame(self.summary["parameters"]).T

    def save(self, out: str | Path) -> Path:
        """Write fit.json, draws.parquet, posterior_predictive.csv and .png to `out` (atomically)."""
        from hpgsim.fit.plots import plot_predictive

        out = Path(out)
        with _staging(out) as tmp:
            (tmp / "fit.json").write_text(json.dumps(self.summary, indent=2) + "\n", encoding="utf-8")
            self.draws.to_parquet(tmp / "draws.parquet", index=False)
            self.predictive.to_csv(tmp / "posterior_predictive.csv", index=False, float_format="%.6g")
            plot_predictive(self.predictive, tmp / "posterior_predictive.png", self.summary)
            _publish(tmp, out, FIT_FILES)
        return out


def _check_out(out: str | Path | None) -> None:
    """Reject an unusable --out before any work (not after a minute of sampling)."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise FitError(f"--out {out}: exists and is not a directory. Choose a directory path.")


class _staging:
    """A temporary directory next to `out`, removed on exit (files are moved into `out` by _publish)."""

    def __init__(self, out: Path) -> None:
        if out.exists() and not out.is_dir():
            raise FitError(f"--out {out}: exists and is not a directory. Choose a directory path.")
        self.out = out

    def __enter__(self) -> Path:
        parent = self.out.parent if self.out.parent.exists() else None
        self.tmp = Path(tempfile.mkdtemp(prefix=".hpgsim-", dir=parent))
        return self.tmp

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _publish(tmp: Path, out: Path, names: tuple[str, ...]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for f in names:
        os.replace(tmp / f, out / f)


def _prior_ranges(problem: Problem, seed: int) -> dict[str, tuple[float, float]]:
    """1st-99th percentile of each lab (08:00, with observation noise) over men drawn from the prior."""
    rng = np.random.default_rng(seed + 7)
    z = rng.standard_normal((PREDICTIVE_DRAWS, len(problem.fit_names)))
    y, ok = batch_labs(problem, z)
    y = y[ok]
    out = {}
    for j, q in enumerate(QUANTITIES):
        noisy = y[:, j] * np.exp(obs_sigma(q) * rng.standard_normal(y.shape[0]))
        out[q] = (float(np.percentile(noisy, 1)), float(np.percentile(noisy, 99)))
    return out


def _range_warnings(labs: Labs, visits: list[int], ranges: dict[str, tuple[float, float]]) -> list[str]:
    out = []
    for i in visits:
        v = labs.visits[i]
        for o in v.observations:
            lo, hi = ranges[o.quantity]
            if o.censored:
                continue
            if o.value < lo or o.value > hi:
                far = o.value < lo / 2 or o.value > hi * 2
                out.append(
                    f"visit {v.label}: {o.quantity} {o.value:.4g} {canonical_unit(o.quantity)} is "
                    f"{'far ' if far else ''}outside the range of phenotype '{labs.phenotype}' (1-99%: {lo:.3g}-{hi:.3g}); "
                    "the fit extrapolates beyond what the model was built for. Check the value and unit, or choose "
                    "another phenotype as prior."
                )
    return out


def fit(
    labs: Labs | str | Path | dict[str, Any],
    out: str | Path | None = None,
    *,
    fast: bool = False,
    seed: int = 0,
    num_warmup: int = 200,
    num_samples: int = 200,
    num_chains: int = 2,
    dense_mass: bool = True,
) -> FitResult:
    """Fit one man's parameters to his labs (Bayesian; the phenotype is the prior).

    Args:
        labs: a labs file path, a mapping in the labs-file format (docs/fit.md) or a Labs.
        out: if given, write the fit there (fit.json, draws.parquet, posterior_predictive.csv/.png).
        fast: MAP + Laplace approximation instead of NUTS (seconds instead of a minute; no R-hat).
        seed: random seed (NUTS key, predictive noise); the same seed gives the same draws.
        num_warmup, num_samples, num_chains: NUTS settings (chains run one after the other).
        dense_mass: NUTS with a dense mass matrix (default; a diagonal one needs ~3x more steps per draw).

    Returns:
        The fit: posterior summaries, diagnostics, warnings, draws and posterior predictive.

    Raises:
        FitError: bad labs, visits during treatment, failed inference.
    """
    from importlib.metadata import version

    from hpgsim.simulation import DISCLAIMER

    t0 = time.perf_counter()
    _check_out(out)
    lab = as_labs(labs)
    for name, val in (("num_warmup", num_warmup), ("num_samples", num_samples), ("num_chains", num_chains)):
        if not isinstance(val, int) or val < 1:
            raise FitError(f"{name}: must be a positive integer, got {val!r}.")
    _entry()
    visits, notes = steady_visits(lab)
    problem = build_problem(lab, visits)
    warnings = _range_warnings(lab, visits, _prior_ranges(problem, seed))
    if fast:
        from hpgsim.fit.inference import run_laplace

        samples = run_laplace(problem, seed, num_samples=max(num_samples * num_chains, 1000))
    else:
        from hpgsim.fit.inference import run_nuts

        samples = run_nuts(problem, seed, num_warmup, num_samples, num_chains, dense_mass)
    warnings += _diagnostic_warnings(samples)
    params, pin = _parameter_summary(problem, samples)
    warnings += pin
    draws = _draws_frame(problem, samples)
    predictive, ppc_warn = _posterior_predictive(problem, lab, visits, samples, seed)
    warnings += ppc_warn
    typical, cv = prior_of(lab.phenotype, lab.age, lab.bmi)
    ph_cv = {k: float(v) for k, v in get_phenotype(lab.phenotype).cv.items()}
    summary: dict[str, Any] = {
        "hpgsim_version": version("hpgsim"),  # not `from hpgsim import`: the top layer
        "disclaimer": DISCLAIMER,
        "patient": {"name": lab.name, "age": lab.age, "bmi": lab.bmi, "phenotype": lab.phenotype},
        "labs_file": lab.source,
        "labs": lab.echo(),
        "visits_used": visits,
        "visit_notes": notes,
        "method": samples.method,
        "seed": seed,
        "diagnostics": samples.diagnostics,
        "parameters": params,
        "fixed_at_prior": {
            k: {
                "why": "no fitted lab depends on it (max |d log lab / d z| = "
                f"{problem.influence.get(k, 0.0):.3g} < 0.02): its posterior is its prior; predict draws it from the prior",
                "typical": typical[k],
                "cv": cv[k],
            }
            for k in problem.free_names
        },
        "prior": {"typical": typical, "cv": ph_cv},
        "influence": problem.influence,
        "warnings": warnings,
        "model_digest": untreated_spec().digest(),
        "elapsed_s": round(time.perf_counter() - t0, 2),
    }
    res = FitResult(summary, draws, predictive)
    if out is not None:
        res.save(out)
    return res


def _diagnostic_warnings(samples: Samples) -> list[str]:
    d = samples.diagnostics
    out = []
    if samples.method == "nuts":
        if d["divergences"] > 0:
            out.append(
                f"NUTS: {d['divergences']} divergent transitions; treat the posterior with caution (more warmup may help)."
            )
        if d["max_r_hat"] > 1.05:
            out.append(f"NUTS: max R-hat {d['max_r_hat']:.3f} > 1.05: the chains disagree; run longer (--samples, --warmup).")
        if d["min_ess"] < 100:
            out.append(f"NUTS: min effective sample size {d['min_ess']:.0f} < 100; run longer for stable 5-95% intervals.")
    elif not d.get("converged", True):
        out.append(f"MAP search did not converge ({d.get('optimizer_message')}); use NUTS (without --fast).")
    return out


def _parameter_summary(problem: Problem, samples: Samples) -> tuple[dict[str, dict[str, Any]], list[str]]:
    z = samples.z.reshape(-1, samples.z.shape[-1])
    out: dict[str, dict[str, Any]] = {}
    pin = []
    for j, name in enumerate(problem.fit_names):
        theta = problem.typical[j] * np.exp(problem.sigma[j] * z[:, j])
        ratio = float(np.std(z[:, j]))  # prior sd of z is 1
        p5, p50, p95 = np.percentile(theta, [5, 50, 95])
        out[name] = {
            "median": float(p50),
            "p5": float(p5),
            "p95": float(p95),
            "prior_median": float(problem.typical[j]),
            "prior_p5": float(problem.typical[j] * np.exp(-1.645 * problem.sigma[j])),
            "prior_p95": float(problem.typical[j] * np.exp(1.645 * problem.sigma[j])),
            "sd_ratio": ratio,
            "unit": untreated_spec().parameters[name].unit,
        }
        if ratio > NOT_PINNED_RATIO:
            pin.append(
                f"the data cannot pin down {name}: its posterior is nearly as wide as its prior ("
                f"sd ratio {ratio:.2f} > {NOT_PINNED_RATIO})."
            )
    return out, pin


def _draws_frame(problem: Problem, samples: Samples) -> pd.DataFrame:
    c, d, k = samples.z.shape
    z = samples.z.reshape(-1, k)
    df = pd.DataFrame(problem.typical[None, :] * np.exp(problem.sigma[None, :] * z), columns=list(problem.fit_names))
    df.insert(0, "draw", np.tile(np.arange(d), c))
    df.insert(0, "chain", np.repeat(np.arange(c), d))
    return df


def _posterior_predictive(
    problem: Problem, labs: Labs, visits: list[int], samples: Samples, seed: int
) -> tuple[pd.DataFrame, list[str]]:
    from hpgsim.observe.labs import diurnal_factor

    z = samples.z.reshape(-1, samples.z.shape[-1])
    rng = np.random.default_rng(seed + 11)
    pick = rng.choice(z.shape[0], size=PREDICTIVE_DRAWS, replace=z.shape[0] < PREDICTIVE_DRAWS)
    y, ok = batch_labs(problem, z[pick])
    if ok.mean() < 0.5:
        raise FitError(
            f"the posterior reaches parameters with no steady state ({100 * (1 - ok.mean()):.0f}% of draws); "
            "the labs may be far outside the phenotype: check them, or use NUTS (without --fast)."
        )
    y = y[ok]
    rows = []
    warn = []
    for i in visits:
        v = labs.visits[i]
        for o in v.observations:
            j = QUANTITIES.index(o.quantity)
            d = float(diurnal_factor(v.hour, labs.age)) if o.quantity in ("total_testosterone", "free_testosterone") else 1.0
            true = y[:, j] * d
            noisy = true * np.exp(obs_sigma(o.quantity) * rng.standard_normal(true.shape))
            p5, p50, p95 = np.percentile(noisy, [5, 50, 95])
            p1, p99 = np.percentile(noisy, [1, 99])
            within = bool(o.value <= p95) if o.censored else bool(p5 <= o.value <= p95)
            rows.append(
                {
                    "visit": v.label,
                    "day": v.day,
                    "hour": v.hour,
                    "quantity": o.quantity,
                    "unit": canonical_unit(o.quantity),
                    "observed": o.value,
                    "censored": o.censored,
                    "predicted_median": p50,
                    "predicted_p5": p5,
                    "predicted_p95": p95,
                    "model_value_median": float(np.median(true)),
                    "within_90": within,
                }
            )
            if not o.censored and not (p1 <= o.value <= p99):
                warn.append(
                    f"visit {v.label}: the fitted model does not reproduce {o.quantity} "
                    f"{o.value:.4g} {canonical_unit(o.quantity)} "
                    f"(posterior predictive 1-99%: {p1:.3g}-{p99:.3g}); the model may not describe this man."
                )
    return pd.DataFrame(rows), warn


def load_fit(path: str | Path) -> FitResult:
    """Read a fit directory written by :func:`fit` / ``hpgsim fit``.

    Raises:
        FitError: missing files or not a fit directory.
    """
    p = Path(path)
    if not (p / "fit.json").is_file() or not (p / "draws.parquet").is_file():
        raise FitError(
            f"--fit {p}: not a fit directory (needs fit.json and draws.parquet). "
            f"Create one with `hpgsim fit LABS.yaml --out {p}`."
        )
    try:
        summary = json.loads((p / "fit.json").read_text(encoding="utf-8"))
        draws = pd.read_parquet(p / "draws.parquet")
    except (ValueError, OSError) as exc:
        raise FitError(f"--fit {p}: cannot read fit.json or draws.parquet ({exc}). Rerun `hpgsim fit`.") from exc
    pred = p / "posterior_predictive.csv"
    predictive = pd.read_csv(pred) if pred.is_file() else pd.DataFrame()
    return FitResult(summary, draws, predictive)


# ----------------------------------------------------------------------------------------- predict

DEFAULT_TARGETS = ("sperm_concentration>=15@119d", "estradiol<10@any", "total_testosterone>=350@90d")
BAND_QUANTITIES = (
    "total_testosterone",
    "free_testosterone",
    "estradiol",
    "te_ratio",
    "lh",
    "fsh",
    "shbg",
    "inhibin_b",
    "intratesticular_testosterone",
    "sperm_concentration",
    "total_motile_count",
)


@dataclass(frozen=True)
class Target:
    """A target such as ``sperm_concentration>=15@120d``: quantity, comparison, threshold (canonical
    units), and a day (None = at any time on treatment)."""

    text: str
    quantity: str
    op: str
    threshold: float
    day: float | None


def parse_target(text: str) -> Target:
    """Parse "quantity OP value [unit] @ time" (time: 120d, 16w, 4m(onths) or 'any').

    Raises:
        FitError: unreadable target, unknown quantity, unit or time.
    """
    import re

    from hpgsim.units import to_canonical

    m = re.fullmatch(r"\s*([a-z_]+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*([^@]*?)\s*@\s*(.+?)\s*", text)
    if not m:
        raise FitError(
            f"--target {text!r}: write quantity, comparison, value and time, e.g. 'sperm_concentration>=15@120d', "
            "'estradiol<10@any' or 'total_testosterone>=12 nmol/L@12w'."
        )
    q, op, val, unit, when = m.groups()
    if q not in BAND_QUANTITIES:
        raise FitError(f"--target {text!r}: unknown quantity {q!r}; use one of {', '.join(BAND_QUANTITIES)}.")
    thr = float(val)
    if unit:
        try:
            thr = 1.0 * thr if unit.replace(" ", "").lower() in ("million/ml", "m/ml") else to_canonical(q, thr, unit)
        except HpgsimError as exc:
            raise FitError(f"--target {text!r}: {exc}") from exc
    if when.lower() == "any":
        return Target(text, q, op, thr, None)
    t = re.fullmatch(r"([0-9.]+)\s*(d|day|days|w|wk|week|weeks|m|mo|month|months)", when.lower())
    if not t:
        raise FitError(f"--target {text!r}: time {when!r} not understood; use e.g. 120d, 16w, 4m or any.")
    n = float(t.group(1))
    scale = {"d": 1.0, "w": 7.0, "m": 30.44}[t.group(2)[0]]
    return Target(text, q, op, thr, n * scale)


def _compare(x: np.ndarray, op: str, thr: float) -> np.ndarray:
    return {">=": x >= thr, ">": x > thr, "<=": x <= thr, "<": x < thr}[op]


@dataclass
class Prediction:
    """Predicted course of one man under a protocol, over posterior draws.

    Attributes:
        bands: long table (day, quantity, unit, p5, p25, p50, p75, p95) of the model values.
        targets: per target, the probability that a lab at that day meets it (observation noise
            applied) and the model-value probability.
        summary: prediction.json content.
        trajectories: per-draw observables (draw, day, quantities).
    """

    bands: pd.DataFrame
    targets: list[dict[str, Any]]
    summary: dict[str, Any]
    trajectories: pd.DataFrame

    def save(self, out: str | Path) -> Path:
        from hpgsim.fit.plots import plot_fan

        out = Path(out)
        with _staging(out) as tmp:
            (tmp / "prediction.json").write_text(json.dumps(self.summary, indent=2) + "\n", encoding="utf-8")
            self.bands.to_csv(tmp / "bands.csv", index=False, float_format="%.6g")
            plot_fan(self.bands, tmp / "fan.png", self.summary)
            _publish(tmp, out, PREDICT_FILES)
        return out


def _target_row(t: Target) -> dict[str, Any]:
    """The columns of a target's row in prediction.json before its probabilities."""
    return {
        "target": t.text,
        "quantity": t.quantity,
        "op": t.op,
        "threshold": t.threshold,
        "unit": canonical_unit(t.quantity),
        "day": t.day,
    }


def predict(
    fit: FitResult | str | Path,
    protocol: Any,
    out: str | Path | None = None,
    *,
    n_draws: int = 100,
    targets: list[str] | tuple[str, ...] | None = None,
    seed: int = 0,
    processes: int = 2,
    output_step_h: float = 24.0,
) -> Prediction:
    """Predict his course under `protocol` from his untreated steady state, over posterior draws.

    Each draw is a man: the fitted parameters from the posterior, the parameters his labs cannot
    see (drug clearances, motility, ...) drawn from the phenotype's prior, the rest typical; the CPU
    engine simulates them (``simulate_population``).

    Args:
        fit: a FitResult or a fit directory.
        protocol: a protocol file path, mapping or Protocol.
        out: if given, write prediction.json, bands.csv and fan.png there.
        n_draws: posterior draws simulated (100-200 gives stable 5-95% bands).
        targets: e.g. ["sperm_concentration>=15@120d", "estradiol<10@any"] (default: DEFAULT_TARGETS
            that fall within the protocol).
        seed: seed for the choice of draws, the prior draws and the lab noise.
        processes: worker processes.

    Raises:
        FitError, ProtocolError: bad fit directory, protocol or target.
    """
    from importlib.metadata import version

    from hpgsim.observe.labs import observe
    from hpgsim.population.phenotypes import Patient
    from hpgsim.simulation import DISCLAIMER, as_protocol, simulate_population

    t0 = time.perf_counter()
    _check_out(out)
    fr = load_fit(fit) if isinstance(fit, str | Path) else fit
    prot = as_protocol(protocol)
    if not isinstance(n_draws, int) or not (2 <= n_draws <= 5000):
        raise FitError(f"--draws {n_draws!r}: must be an integer between 2 and 5000.")
    user_targets = targets is not None
    parsed = [parse_target(t) for t in (targets if targets is not None else DEFAULT_TARGETS)]
    dur = prot.duration_days
    kept = []
    notes = []
    for t in parsed:
        if t.day is not None and t.day > dur:
            if user_targets:
                raise FitError(f"--target {t.text!r}: day {t.day:g} is after the end of the protocol (day {dur:g}).")
            notes.append(f"default target {t.text} skipped: the protocol ends on day {dur:g}")
            continue
        kept.append(t)
    s = fr.summary
    patient = s["patient"]
    typical = {k: float(v) for k, v in s["prior"]["typical"].items()}
    cv = {k: float(v) for k, v in s["prior"]["cv"].items()}
    fitted = [c for c in fr.draws.columns if c not in ("chain", "draw")]
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(fr.draws), size=n_draws, replace=len(fr.draws) < n_draws)
    rows = fr.draws.iloc[idx][fitted].to_numpy()
    unseen = sorted(k for k in cv if k not in fitted)
    men = []
    for i in range(n_draws):
        params = dict(typical)
        for k in unseen:
            params[k] = typical[k] * float(np.exp(np.sqrt(np.log1p(cv[k] ** 2)) * rng.standard_normal()))
        params.update({k: float(v) for k, v in zip(fitted, rows[i], strict=True)})
        men.append(Patient(f"{patient['name']} draw {i}", params, patient["phenotype"]))
    results = simulate_population(prot, men, processes=processes, output_step_h=output_step_h)
    days = results[0].days
    stack = {q: np.stack([r.observables[q].to_numpy() for r in results]) for q in BAND_QUANTITIES}
    band_rows = []
    for q in BAND_QUANTITIES:
        pct = np.percentile(stack[q], [5, 25, 50, 75, 95], axis=0)
        for j, d in enumerate(days):
            band_rows.append([d, q, canonical_unit(q), *pct[:, j]])
    bands = pd.DataFrame(band_rows, columns=["day", "quantity", "unit", "p5", "p25", "p50", "p75", "p95"])
    noise_rng = np.random.default_rng(seed + 1)
    tres = []
    for t in kept:
        x = stack[t.quantity]
        if t.day is None:
            on = days > 0
            worst = x[:, on].min(axis=1) if t.op in ("<", "<=") else x[:, on].max(axis=1)
            p_model = float(_compare(worst, t.op, t.threshold).mean())
            tres.append(
                {
                    **_target_row(t),
                    "probability": p_model,
                    "probability_model_value": p_model,
                    "how": "model value (no lab noise) at any day on treatment",
                }
            )
            continue
        val = np.array([np.interp(t.day, days, row) for row in x])
        lab = observe(t.quantity, val, noise_rng, hour=8.0, age_years=float(patient["age"]))
        tres.append(
            {
                **_target_row(t),
                "probability": float(_compare(lab, t.op, t.threshold).mean()),
                "probability_model_value": float(_compare(val, t.op, t.threshold).mean()),
                "how": "a morning lab on that day (within-person and assay noise applied)",
            }
        )
    flags = sorted({f for r in results for f in r.flags})
    traj = pd.concat(
        [r.observables[list(BAND_QUANTITIES)].reset_index().assign(draw=i) for i, r in enumerate(results)], ignore_index=True
    )
    summary = {
        "hpgsim_version": version("hpgsim"),  # not `from hpgsim import`: the top layer
        "disclaimer": DISCLAIMER,
        "patient": patient,
        "fit_method": s.get("method"),
        "fit_model_digest": s.get("model_digest"),
        "model_digest": results[0].model_digest,
        "protocol": {"name": prot.name, "duration_days": dur},
        "n_draws": n_draws,
        "seed": seed,
        "targets": tres,
        "notes": notes,
        "fit_warnings": s.get("warnings", []),
        "flags": flags,
        "men_with_flags": {f: sum(f in r.flags for r in results) for f in flags},
        "parameters_from_prior": unseen,
        "bands": "model values (no lab noise), percentiles over posterior draws",
        "elapsed_s": round(time.perf_counter() - t0, 2),
    }
    pred = Prediction(bands, tres, summary, traj)
    if out is not None:
        pred.save(out)
    return pred
