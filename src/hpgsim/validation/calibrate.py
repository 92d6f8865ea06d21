"""Calibration of the free model parameters against the packaged study set (`hpgsim calibrate`).

The free parameters, their priors and bounds are data (``data/model/calibration.yaml``); the fitted
values are written to ``data/model/calibrated.yaml``, which :func:`hpgsim.model.spec.load_model`
applies over physiology.yaml with the source "calibrated: against <study ids>".

Objective (documented in docs/calibration.md): for every study arm, the phenotype's typical man
(age and BMI at the arm's means) is simulated under the arm's protocol, and every observation that a
single trajectory can express (levels, changes from baseline, percent and fold changes, median
times) contributes a residual scaled by the tolerance of the validation score::

    r = (simulated - observed) / tol,   tol = max(1.96 x SE, relative floor)   (score.py's rules)

so that |r| <= 1 means "within". Proportions need a cohort and are left to validation. Residuals go
through a soft-L1 loss (a structural miss cannot dominate the fit), and each free parameter adds a
log-normal prior residual log(theta / theta_prior) / sd_log. Parameters are fitted on the log scale
with bounds (scipy ``least_squares``, trust-region reflective, finite-difference Jacobian).

Cohort offsets (``calibrate_with_cohorts``): the typical man is a fast stand-in for the cohort that
validation scores (men drawn from the phenotype, narrowed by the study's inclusion filters). After a
fit, each arm's cohort is simulated with the fitted values and, per observation, the offset
cohort statistic - typical-man statistic is added to the typical man's value in a refit from the
priors, so that the objective approximates the cohort score while each evaluation stays one
simulation per arm (a bias-corrected surrogate).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hpgsim.errors import SimulationError, SpecError
from hpgsim.model.spec import CALIBRATED_FILE_ENV, UNCALIBRATED_ENV, load_model
from hpgsim.population.phenotypes import Patient, get_phenotype, typical_patient
from hpgsim.population.phenotypes import _raw as _phenotype_raw
from hpgsim.simulation import simulate, worker_pool
from hpgsim.validation.run import _per_unit, output_step_h
from hpgsim.validation.score import LEVELS, tolerance
from hpgsim.validation.studies import Study

CALIBRATED_FILE = "calibrated.yaml"
CALIBRATABLE = ("mean", "median", "geometric_mean", "percent_change", "fold_change", "median_time_to")
RESIDUAL_CAP = 10.0  # a failed simulation counts as this many tolerances off


@dataclass(frozen=True)
class FreeParameter:
    name: str
    prior: float  # prior median (the uncalibrated value)
    sd_log: float  # prior standard deviation of log(theta)
    lower: float
    upper: float
    why: str


def load_calibration_config() -> list[FreeParameter]:
    """The free parameters of the calibration (data/model/calibration.yaml) with their priors and bounds."""
    text = resources.files("hpgsim.data.model").joinpath("calibration.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    spec = load_model(None, calibrated=False)
    out = []
    for name, d in (raw.get("phenotype_free") or {}).items():
        ph, _, par = name.partition(".")
        if par not in spec.parameters:
            raise SpecError(f"calibration.yaml: phenotype_free {name!r}: {par!r} is not a model parameter.")
        get_phenotype(ph)  # unknown phenotype: a clear error
        lo, hi = (float(x) for x in d["bounds"])
        if not (0 < lo < 1.0 < hi):
            raise SpecError(f"calibration.yaml: {name}: bounds {lo}..{hi} of a phenotype multiplier must bracket 1.")
        out.append(FreeParameter(name, 1.0, float(d["sd_log"]), lo, hi, str(d.get("why", ""))))
    for name, d in (raw.get("free") or {}).items():
        if name not in spec.parameters:
            raise SpecError(f"calibration.yaml: free parameter {name!r} is not a model parameter.")
        prior = float(spec.parameters[name].value)
        lo, hi = (float(x) for x in d["bounds"])
        if not (0 < lo < prior < hi):
            raise SpecError(f"calibration.yaml: {name}: bounds {lo}..{hi} must bracket the prior value {prior} and be > 0.")
        out.append(FreeParameter(name, prior, float(d["sd_log"]), lo, hi, str(d.get("why", ""))))
    return out


@dataclass(frozen=True)
class Anchor:
    parameter: str
    observable: str
    value: float
    source: str


def load_anchors() -> list[Anchor]:
    """Baseline anchors of calibration.yaml: synthesis constants re-solved for the typical healthy man."""
    text = resources.files("hpgsim.data.model").joinpath("calibration.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text).get("anchors") or {}
    return [Anchor(k, str(d["observable"]), float(d["value"]), str(d["source"])) for k, d in raw.items()]


def solve_anchors(theta: dict[str, float], prior: dict[str, float], anchors: Sequence[Anchor]) -> dict[str, float]:
    """Values of the anchor parameters that give the typical healthy man the anchored baseline under `theta`."""
    from scipy.optimize import least_squares

    from hpgsim.engine.steady import steady_state
    from hpgsim.simulation import observe_states

    if not anchors:
        return {}
    spec = load_model(frozenset())
    man = typical_patient("healthy")
    params = dict(man.parameters)
    for k, v in theta.items():
        if "." not in k:
            params[k] = params[k] * v / prior[k]
    names = list(spec.parameters)
    p0 = np.array([params.get(n, spec.parameters[n].value) for n in names])
    idx = [names.index(a.parameter) for a in anchors]

    def resid(x: np.ndarray) -> list[float]:
        p = p0.copy()
        p[idx] = np.exp(x)
        try:
            y = steady_state(spec, p, patient="anchor")
        except SimulationError:  # a trial point outside physiology: steer the search away
            return [5.0] * len(anchors)
        o = observe_states(spec, p, y[None, :], np.array([0.0])).iloc[0]
        return [math.log(max(float(o[a.observable]), 1e-12) / a.value) for a in anchors]

    fit = least_squares(resid, np.log(p0[idx]), diff_step=1e-3, xtol=1e-10)
    return {a.parameter: float(math.exp(v)) for a, v in zip(anchors, fit.x, strict=True)}


def _arm_man(study: Study, arm_index: int, theta: dict[str, float], prior: dict[str, float]) -> Patient:
    pop = study.data.population
    man = typical_patient(pop.phenotype)
    params = dict(man.parameters)
    for k, v in theta.items():
        ph, _, par = k.partition(".")
        if par:  # a phenotype multiplier (prior 1) on one parameter of one phenotype
            if ph == pop.phenotype:
                params[par] = params[par] * v
        else:  # scale, so that phenotype factors on a free parameter are kept
            params[k] = params[k] * v / prior[k]
    if pop.age_years is not None:
        params["age"] = float(pop.age_years.typical)
    if pop.bmi_kg_m2 is not None:
        params["bmi"] = float(pop.bmi_kg_m2.typical)
    return replace(man, name=f"{study.id} arm {arm_index + 1} (typical man)", parameters=params)


def _single_stat(obs: Any, frame: Any) -> float | None:
    q = obs.quantity
    days = frame.index.to_numpy()
    v = frame[q].to_numpy() / _per_unit(q, obs.unit)
    if obs.stat in LEVELS:
        return float(np.interp(obs.day, days, v))
    if obs.stat in ("percent_change", "fold_change"):
        b, a = float(v[0]), float(np.interp(obs.day, days, v))
        if b <= 0:
            return None
        return 100.0 * (a / b - 1.0) if obs.stat == "percent_change" else a / b
    below = obs.below is not None
    thr = obs.below if below else obs.above
    m = days >= obs.from_day
    hit = np.nonzero((v[m] < thr) if below else (v[m] > thr))[0]
    return float(days[m][hit[0]] - obs.from_day) if hit.size else None


Offsets = dict[tuple[str, int, int], float]  # (study id, arm index, observation index) -> cohort - typical man


def arm_residuals(
    study: Study, arm_index: int, theta: dict[str, float], prior: dict[str, float], offsets: dict[int, float] | None = None
) -> list[dict[str, Any]]:
    """Scaled residuals of one arm's calibratable observations for parameter values `theta`.

    `offsets` (observation index -> value, in the observation's unit) are added to the typical man's
    statistics (cohort offsets, module docstring); each row keeps the offset it used.
    """
    offsets = offsets or {}
    arm = study.data.arms[arm_index]
    obs_list = [(i, o) for i, o in enumerate(arm.observations) if o.stat in CALIBRATABLE and o.among is None]
    if not obs_list:
        return []
    man = _arm_man(study, arm_index, theta, prior)
    try:
        res = simulate(study.protocols[arm_index], man, output_step_h=output_step_h(study, arm_index))
        frame = res.observables
    except SimulationError:
        frame = None
    out = []
    for i, obs in obs_list:
        base = None
        if obs.stat in LEVELS and obs.day and obs.day > 0:
            base = next(
                (
                    o
                    for o in arm.observations
                    if o.quantity == obs.quantity and o.stat == obs.stat and o.day == 0 and o.among is None
                ),
                None,
            )
        n = obs.n or arm.n
        tol = tolerance(obs, base, n, (base.n or arm.n) if base is not None else n)
        sim = _single_stat(obs, frame) if frame is not None else None
        if sim is not None:
            sim += offsets.get(i, 0.0)
        if sim is not None and base is not None and frame is not None:
            sim0 = _single_stat(base, frame)
            if sim0 is not None:
                sim0 += offsets.get(arm.observations.index(base), 0.0)
            r = ((sim - sim0) - (obs.value - base.value)) / tol if sim0 is not None else RESIDUAL_CAP
        elif sim is not None:
            r = (sim - obs.value) / tol
        else:
            r = RESIDUAL_CAP
        out.append(
            {
                "study": study.id,
                "arm": arm.name,
                "index": i,
                "quantity": obs.quantity,
                "stat": obs.stat,
                "day": obs.day,
                "observed": obs.value,
                "simulated": sim,
                "offset": offsets.get(i, 0.0),
                "residual": float(np.clip(r, -RESIDUAL_CAP, RESIDUAL_CAP)),
            }
        )
    return out


def _job(args: tuple[Study, int, dict[str, float], dict[str, float], dict[int, float]]) -> list[dict[str, Any]]:
    return arm_residuals(*args)


class Objective:
    """Residual vector over all arms for log-parameters; evaluates arms in a process pool."""

    def __init__(
        self, studies: Sequence[Study], free: Sequence[FreeParameter], processes: int = 2, offsets: Offsets | None = None
    ) -> None:
        self.studies = list(studies)
        self.offsets = offsets or {}
        self.free = list(free)
        self.prior = {f.name: f.prior for f in free}
        self.anchors = load_anchors()
        spec = load_model(None)
        for a in self.anchors:
            self.prior[a.parameter] = float(spec.parameters[a.parameter].value)
        self.last_anchors: dict[str, float] = {}
        self.jobs = [(s, ai) for s in self.studies for ai in range(len(s.data.arms))]
        self.processes = max(1, min(processes, os.cpu_count() or 1))
        self._pool: ProcessPoolExecutor | None = None
        self.evaluations = 0

    def __enter__(self) -> Objective:
        if self.processes > 1:
            # the process-wide pool, keyed by the HPGSIM_* environment: inside `uncalibrated()` its
            # workers run the uncalibrated model, and the next run outside gets fresh workers
            self._pool = worker_pool(self.processes)
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool = None

    def theta(self, x: np.ndarray) -> dict[str, float]:
        return {f.name: float(math.exp(v)) for f, v in zip(self.free, x, strict=True)}

    def rows(self, x: np.ndarray) -> list[dict[str, Any]]:
        theta = self.theta(x)
        self.last_anchors = solve_anchors(theta, self.prior, self.anchors)
        theta.update(self.last_anchors)
        self.evaluations += 1
        args = [(s, ai, theta, self.prior, self._arm_offsets(s.id, ai)) for s, ai in self.jobs]
        if self._pool is None:
            return [r for a in args for r in _job(a)]
        return [r for rows in self._pool.map(_job, args) for r in rows]

    def _arm_offsets(self, study_id: str, arm_index: int) -> dict[int, float]:
        return {oi: v for (sid, ai, oi), v in self.offsets.items() if sid == study_id and ai == arm_index}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        data = [r["residual"] for r in self.rows(x)]
        prior = [(v - math.log(f.prior)) / f.sd_log for f, v in zip(self.free, x, strict=True)]
        return np.array(data + prior, dtype=float)


def calibrate(
    studies: Sequence[Study],
    free: Sequence[FreeParameter] | None = None,
    processes: int = 2,
    max_iterations: int = 60,
    progress: Callable[[str], None] | None = None,
    offsets: Offsets | None = None,
) -> dict[str, Any]:
    """Fit the free parameters to `studies`; returns the fitted values, residuals before and after.

    `offsets`: cohort offsets added to the typical man's statistics (module docstring).
    """
    from scipy.optimize import least_squares

    with uncalibrated():
        free = list(free) if free is not None else load_calibration_config()
        x0 = np.log([f.prior for f in free])
        lo = np.log([f.lower for f in free])
        hi = np.log([f.upper for f in free])
        with Objective(studies, free, processes, offsets) as obj:
            before = obj.rows(x0)

            def fun(x: np.ndarray) -> np.ndarray:
                r = obj(x)
                if progress:
                    progress(f"evaluation {obj.evaluations}: cost {0.5 * float(np.sum(np.minimum(r**2, 2 * np.abs(r)))):.2f}")
                return r

            fit = least_squares(
                fun, x0, bounds=(lo, hi), loss="soft_l1", f_scale=1.0, diff_step=0.02, max_nfev=max_iterations, x_scale=1.0
            )
            after = obj.rows(fit.x)
            anchors = {a.parameter: (obj.last_anchors[a.parameter], obj.prior[a.parameter], a) for a in obj.anchors}
            evaluations = obj.evaluations
    # approximate posterior sd on the log scale from the Gauss-Newton Hessian (identifiability)
    try:
        cov = np.linalg.inv(fit.jac.T @ fit.jac)
        sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        sd = np.full(len(free), np.nan)
    values = {}
    for f, x, s in zip(free, fit.x, sd, strict=True):
        values[f.name] = {
            "value": float(f"{math.exp(x):.6g}"),
            "before": f.prior,
            "prior_sd_log": f.sd_log,
            "bounds": [f.lower, f.upper],
            "posterior_sd_log": None if not np.isfinite(s) else float(f"{s:.3g}"),
            "at_bound": bool(abs(x - math.log(f.lower)) < 1e-3 or abs(x - math.log(f.upper)) < 1e-3),
        }
    for name, (v, prior_value, a) in anchors.items():
        values[name] = {
            "value": float(f"{v:.6g}"),
            "before": prior_value,
            "anchor": f"typical healthy man's {a.observable} = {a.value:g} ({a.source})",
        }
    return {
        "against": sorted({s.id for s in studies}),
        "values": values,
        "before": before,
        "after": after,
        "evaluations": evaluations,
        "status": str(fit.message),
    }


def cohort_offsets(
    studies: Sequence[Study],
    result: dict[str, Any],
    n: int = 200,
    seed: int = 1,
    processes: int = 2,
    progress: Callable[[str], None] | None = None,
) -> Offsets:
    """Cohort statistic minus typical-man statistic for every observation of the objective, at `result`'s fit.

    Each arm's cohort (`hpgsim validate`'s: `n` men, `seed`, inclusion filters) is simulated with the
    fitted values; observations where either side has no value get no offset.
    """
    from hpgsim.validation.run import run_study

    typical = {
        (r["study"], r["arm"], r["index"]): r["simulated"] - r.get("offset", 0.0)
        for r in result["after"]
        if r["simulated"] is not None
    }
    out: Offsets = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_calibrated(result, Path(tmp) / CALIBRATED_FILE)
        with calibrated_from(path):
            for k, study in enumerate(studies):
                if progress:
                    progress(f"cohorts [{k + 1}/{len(studies)}] {study.id}")
                rows = iter(run_study(study, n=n, seed=seed, processes=processes))
                for ai, arm in enumerate(study.data.arms):
                    for oi in range(len(arm.observations)):
                        cohort = next(rows)["simulated"]
                        t = typical.get((study.id, arm.name, oi))
                        if cohort is not None and t is not None and math.isfinite(cohort):
                            out[(study.id, ai, oi)] = float(cohort - t)
    return out


def calibrate_with_cohorts(
    studies: Sequence[Study],
    free: Sequence[FreeParameter] | None = None,
    processes: int = 2,
    max_iterations: int = 60,
    passes: int = 1,
    n: int = 200,
    seed: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """`calibrate`, then `passes` times: cohort offsets at the last fit and a refit from the priors with them."""
    result = calibrate(studies, free, processes, max_iterations, progress)
    offsets: Offsets = {}
    for p in range(passes):
        if progress:
            progress(f"cohort pass {p + 1} of {passes}: {n} men per arm, seed {seed}")
        offsets = cohort_offsets(studies, result, n, seed, processes, progress)
        result = calibrate(studies, free, processes, max_iterations, progress, offsets)
    if not passes:
        return result
    names = {(s.id, ai): a.name for s in studies for ai, a in enumerate(s.data.arms)}
    result["cohort"] = {
        "passes": passes,
        "n": n,
        "seed": seed,
        "offsets": [
            {"study": sid, "arm": names[(sid, ai)], "index": oi, "offset": float(f"{v:.6g}")}
            for (sid, ai, oi), v in sorted(offsets.items())
        ],
    }
    return result


@contextmanager
def _model_environment(**env: str | None) -> Iterator[None]:
    """Set (or, with None, unset) HPGSIM_* variables that choose the calibration for this process and the
    workers it starts; model and phenotype caches are cleared on entry and exit, the variables restored."""
    before = {k: os.environ.get(k) for k in env}

    def apply(values: dict[str, str | None]) -> None:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        load_model.cache_clear()
        _phenotype_cache_clear()

    apply(env)
    try:
        yield
    finally:
        apply(before)


def calibrated_from(path: Path) -> AbstractContextManager[None]:
    """Within the block, this process and the workers it starts use the calibrated.yaml at `path`."""
    return _model_environment(**{CALIBRATED_FILE_ENV: str(path), UNCALIBRATED_ENV: None})


def _phenotype_cache_clear() -> None:
    _phenotype_raw.cache_clear()


def uncalibrated() -> AbstractContextManager[None]:
    """Within the block, this process and the workers it starts use the uncalibrated model (the priors)."""
    return _model_environment(**{UNCALIBRATED_ENV: "1"})


def calibrated_path() -> Path:
    return Path(str(resources.files("hpgsim.data.model").joinpath(CALIBRATED_FILE)))


def write_calibrated(result: dict[str, Any], path: Path | None = None) -> Path:
    """Write the fitted values (with provenance) where load_model reads them; atomic replace."""
    path = path or calibrated_path()
    doc = {
        "generated_by": "hpgsim calibrate",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "against": result["against"],
        "objective": "typical man per arm; residuals / validation-score tolerances; soft-L1 loss; log-normal priors"
        + (
            "; cohort offsets ({passes} pass(es), {n} men per arm, seed {seed})".format(**result["cohort"])
            if "cohort" in result
            else ""
        ),
        "evaluations": result["evaluations"],
        "optimizer_status": result["status"],
        "values": {k: v for k, v in result["values"].items() if "." not in k},
        "phenotype_multipliers": {k: v for k, v in result["values"].items() if "." in k},
    }
    tmp = path.with_name(f".{path.name}.tmp")
    header = "# Written by `hpgsim calibrate` (docs/calibration.md). Do not edit by hand: rerun `make calibrate`.\n"
    tmp.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=120), encoding="utf-8")
    os.replace(tmp, path)
    return path
