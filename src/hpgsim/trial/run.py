"""Run a virtual trial: draw men per arm, simulate each arm, read labs through the observation model,
and compute endpoints, responder rates and subgroup tables with bootstrap / Wilson CIs.

Arms are parallel groups: each arm has its own men, drawn from the same population with its own
seed (as in a randomised trial). Labs are read once per man, quantity and day (seeded), so endpoints,
responder rules and subgroups all see the same "measured" values.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpgsim.engine.steady import steady_state
from hpgsim.errors import SpecError
from hpgsim.observe import labs
from hpgsim.observe.stats import at_day
from hpgsim.population.covariates import CovariateDistribution
from hpgsim.population.phenotypes import Patient, get_phenotype, sample_patients
from hpgsim.protocol.schema import Protocol, protocol_flags
from hpgsim.simulation import E2_LOW_PG_ML, SimulationResult, model_for, observe_states, simulate_population
from hpgsim.trial import stats as ts
from hpgsim.trial.schema import COVARIATES, Arm, Trial, as_trial

Progress = Callable[[int, int], None]
MAX_DRAWS_PER_MAN = 50
_DIFF = ["diff_vs_control", "diff_ci_low", "diff_ci_high"]
RESPONDER_COLUMNS = ["responder", "rule", "safety", "arm", "control", "n", "responders", "rate", "ci_low", "ci_high", *_DIFF]
SUBGROUP_COLUMNS = [
    "subgroup", "level", "kind", "name", "quantity", "day", "statistic", "unit", "rule", "safety", "arm", "control", "n",
    "responders", "estimate", "ci_low", "ci_high", *_DIFF,
]  # fmt: skip


@dataclass
class ArmData:
    """One simulated arm: its men, their underlying trajectories and the labs read from them."""

    arm: Arm
    index: int
    men: list[Patient]
    results: list[SimulationResult]
    days: np.ndarray  # (n_days,)
    quantities: list[str]
    values: np.ndarray  # (n_men, n_days, n_quantities), canonical units, underlying (noise-free)
    lab_cache: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)

    @property
    def ages(self) -> np.ndarray:
        return np.array([m.parameters["age"] for m in self.men])

    @property
    def bmis(self) -> np.ndarray:
        return np.array([m.parameters["bmi"] for m in self.men])

    def series(self, quantity: str) -> np.ndarray:
        """Underlying values, shape (n_men, n_days); a drug this arm does not give has concentration 0."""
        if quantity not in self.quantities:
            return np.zeros((len(self.men), self.days.size))
        return self.values[:, :, self.quantities.index(quantity)]

    def true_at(self, quantity: str, day: float) -> np.ndarray:
        """Each man's underlying value at `day` (linear interpolation between output rows), shape (n_men,)."""
        return at_day(self.days, self.series(quantity), day)


def _seed_int(*keys: int) -> int:
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def _allocate(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Largest-remainder split of n men over the phenotype mixture (deterministic)."""
    raw = {k: n * f for k, f in fractions.items()}
    out = {k: int(np.floor(v)) for k, v in raw.items()}
    left = n - sum(out.values())
    for k in sorted(raw, key=lambda k: (-(raw[k] - out[k]), k))[:left]:
        out[k] += 1
    return out


def _draw_covariate(r: CovariateDistribution | None, current: float, rng: np.random.Generator, floor: float) -> float:
    return current if r is None else r.draw(rng, floor)


def _baseline_spec() -> Any:
    return model_for(Protocol("baseline", 24.0, ()))


def _passes(man: Patient, trial: Trial, spec: Any, rng: np.random.Generator) -> bool:
    """Whether the man's screening labs pass the inclusion filters: a screening lab is its own draw through
    the observation model (at the trial's lab hour), so men selected on one low value regress towards
    their mean by day 0, as in real trials. Age and BMI are taken as known."""
    if not trial.inclusion:
        return True
    base: pd.Series | None = None
    for f in trial.inclusion:
        if f.quantity in COVARIATES:
            v = float(man.parameters[f.quantity])
        else:
            if base is None:
                p = man.vector(spec)
                y0 = steady_state(spec, p, patient=man.name)
                base = observe_states(spec, p, y0[None, :], np.array([0.0])).iloc[0]
            true = np.array([float(base[f.quantity])])
            age = np.array([float(man.parameters["age"])])
            v = float(labs.observe(f.quantity, true, rng, hour=trial.lab_hour, age_years=age)[0])
        if (f.min is not None and v < f.min) or (f.max is not None and v > f.max):
            return False
    return True


def draw_men(trial: Trial, arm_index: int) -> list[Patient]:
    """The arm's virtual men: the phenotype mixture, covariates narrowed, day-0 inclusion filters applied
    by rejection sampling on each candidate's untreated steady state.

    Raises:
        SpecError: the filters keep too few men (fewer than n after 50 x n candidates).
    """
    n = trial.n_per_arm
    counts = _allocate(n, trial.phenotypes)
    spec = _baseline_spec() if trial.inclusion else None
    men: list[Patient] = []
    for pi, (ph, k) in enumerate(sorted(counts.items())):
        if k == 0:
            continue
        kept: list[Patient] = []
        tried, batch_no = 0, 0
        while len(kept) < k:
            batch = sample_patients(ph, k, seed=_seed_int(trial.seed, arm_index, pi, batch_no))
            rng = np.random.default_rng([trial.seed, arm_index, pi, batch_no, 1])
            batch_no += 1
            for man in batch:
                tried += 1
                params = dict(man.parameters)
                params["age"] = _draw_covariate(trial.age, params["age"], rng, 18.0)
                params["bmi"] = _draw_covariate(trial.bmi, params["bmi"], rng, 15.0)
                cand = replace(man, parameters=params)
                if _passes(cand, trial, spec, rng):
                    kept.append(cand)
                    if len(kept) == k:
                        break
            if len(kept) < k and tried >= MAX_DRAWS_PER_MAN * k:
                rules = "; ".join(f.text for f in trial.inclusion)
                raise SpecError(
                    f"{trial.source}, key 'population.inclusion': only {len(kept)} of {tried} virtual {ph} men pass "
                    f"({rules}); the filters are nearly impossible for this phenotype. Widen them or choose another phenotype."
                )
        men.extend(kept)
    return [replace(m, name=f"{trial.arms[arm_index].name} #{i}") for i, m in enumerate(men)]


def _simulate_arm(
    protocol: Protocol,
    men: Sequence[Patient],
    processes: int,
    progress: Progress | None,
    output_step_h: float = 24.0,
    scheduler: str = "local",
) -> list[SimulationResult]:
    """Simulate one arm's men under its protocol (the one place a trial calls the engine)."""
    if scheduler == "local":
        return simulate_population(protocol, list(men), processes=processes, output_step_h=output_step_h, progress=progress)
    from hpgsim.distributed import run_population

    return run_population(
        protocol, list(men), scheduler=scheduler, processes=processes, output_step_h=output_step_h, progress=progress
    )


def simulate_arms(trial: Trial, processes: int = 2, progress: Progress | None = None, scheduler: str = "local") -> list[ArmData]:
    """Draw and simulate every arm; `progress(done, total)` counts men over all arms."""
    total = trial.n_per_arm * len(trial.arms)
    out = []
    for ai, arm in enumerate(trial.arms):
        men = draw_men(trial, ai)
        offset = ai * trial.n_per_arm

        def cb(done: int, _n: int, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + done, total)

        results = _simulate_arm(arm.protocol, men, processes, cb, trial.output_step_h, scheduler)
        quantities = list(results[0].observables.columns)
        values = np.stack([r.observables[quantities].to_numpy() for r in results])
        days = results[0].observables.index.to_numpy()
        out.append(ArmData(arm, ai, men, results, days, quantities, values))
    return out


def lab(data: ArmData, quantity: str, day: float, trial: Trial) -> np.ndarray:
    """Each man's measured value (canonical units) of `quantity` on `day`, through the observation model.

    One seeded draw per (arm, quantity, day), independent of which other labs are read. T/E2 is the
    ratio of the measured T and E2; a semen sample from an azoospermic man (concentration below
    0.01 million/mL) reads 0.
    """
    key = (quantity, float(day))
    if key in data.lab_cache:
        return data.lab_cache[key]
    if quantity == "te_ratio":
        v = lab(data, "total_testosterone", day, trial) / lab(data, "estradiol", day, trial)
    else:
        qkey = zlib.crc32(quantity.encode())  # stable across model versions and arms' column orders
        rng = np.random.default_rng([trial.seed, data.index, round(day * 1000), qkey, 17])
        true = data.true_at(quantity, day)
        v = labs.observe(quantity, true, rng, hour=trial.lab_hour, age_years=data.ages)
        if quantity in ("sperm_concentration", "total_sperm_count", "total_motile_count"):
            azo = labs.is_azoospermic(data.true_at("sperm_concentration", day))
            v = np.where(azo, 0.0, v)
    data.lab_cache[key] = v
    return v


def _subgroup_values(data: ArmData, quantity: str, trial: Trial) -> np.ndarray:
    if quantity == "age":
        return data.ages
    if quantity == "bmi":
        return data.bmis
    return lab(data, quantity, 0.0, trial)


@dataclass
class TrialResult:
    """A virtual trial's results (tables as DataFrames; see docs/trials.md for the columns)."""

    trial: Trial
    endpoints: pd.DataFrame
    responders: pd.DataFrame
    subgroups: pd.DataFrame
    per_man: pd.DataFrame
    bands: pd.DataFrame
    published: pd.DataFrame
    flags: list[str]
    summary: dict[str, Any]
    out: Path | None = None

    def write(self, out: str | Path) -> Path:
        """Write every output file to `out` (atomically: a temporary folder, then a rename)."""
        from hpgsim.trial.report import write_outputs

        self.out = write_outputs(self, Path(out))
        return self.out


def _endpoint_rows(
    arms: list[ArmData], trial: Trial, mask: dict[int, np.ndarray] | None, rng_key: tuple[int, ...]
) -> list[dict[str, Any]]:
    rows = []
    ctrl = next(d for d in arms if d.arm.control)
    for ei, e in enumerate(trial.endpoints):
        f = ts.estimator(e.statistic, e.threshold)
        reps: dict[int, np.ndarray] = {}
        est: dict[int, tuple[float, float, float, int]] = {}
        for d in arms:
            b = lab(d, e.quantity, 0.0, trial) / e.per_unit
            a = lab(d, e.quantity, e.day, trial) / e.per_unit
            if mask is not None:
                b, a = b[mask[d.index]], a[mask[d.index]]
            rng = np.random.default_rng([trial.seed, *rng_key, ei, d.index, 3])
            value, lo, hi, r = ts.estimate_with_ci(f, b, a, trial.bootstrap, rng)
            if e.statistic.startswith("proportion") and b.size:
                lo, hi = ts.wilson(round(value * b.size), b.size)
            reps[d.index] = r
            est[d.index] = (value, lo, hi, int(b.size))
        for d in arms:
            value, lo, hi, n = est[d.index]
            row: dict[str, Any] = {
                "endpoint": e.label,
                "quantity": e.quantity,
                "day": e.day,
                "statistic": e.statistic,
                "unit": "%"
                if e.statistic == "percent_change"
                else ("proportion" if e.statistic.startswith("proportion") else e.unit),
                "arm": d.arm.name,
                "control": d.arm.control,
                "n": n,
                "estimate": value,
                "ci_low": lo,
                "ci_high": hi,
                "diff_vs_control": np.nan,
                "diff_ci_low": np.nan,
                "diff_ci_high": np.nan,
            }
            if not d.arm.control:
                row["diff_vs_control"] = value - est[ctrl.index][0]
                row["diff_ci_low"], row["diff_ci_high"] = ts.difference_ci(reps[d.index], reps[ctrl.index])
            rows.append(row)
    return rows


def responder_flags(data: ArmData, trial: Trial) -> dict[str, np.ndarray]:
    """Per responder rule, each man's flag (bool array, shape (n_men,))."""
    out = {}
    for r in trial.responders:
        parts = []
        for c in r.criteria:
            b = lab(data, c.quantity, 0.0, trial) / c.per_unit
            a = lab(data, c.quantity, c.day, trial) / c.per_unit
            v = ts.change_of(c.of, b, a)
            parts.append(ts.criterion_met(v, c.min, c.max, c.above, c.below))
        out[r.name] = ts.combine(parts, r.require_all)
    return out


def _responder_rows(
    arms: list[ArmData], trial: Trial, flags: dict[int, dict[str, np.ndarray]], mask: dict[int, np.ndarray] | None
) -> list[dict[str, Any]]:
    rows = []
    ctrl = next(d for d in arms if d.arm.control)
    for r in trial.responders:
        counts = {}
        for d in arms:
            fl = flags[d.index][r.name]
            if mask is not None:
                fl = fl[mask[d.index]]
            counts[d.index] = (int(fl.sum()), int(fl.size))
        xc, nc = counts[ctrl.index]
        for d in arms:
            x, n = counts[d.index]
            lo, hi = ts.wilson(x, n) if n else (np.nan, np.nan)
            row: dict[str, Any] = {
                "responder": r.name,
                "rule": (" AND " if r.require_all else " OR ").join(c.text for c in r.criteria),
                "safety": r.safety,
                "arm": d.arm.name,
                "control": d.arm.control,
                "n": n,
                "responders": x,
                "rate": x / n if n else np.nan,
                "ci_low": lo,
                "ci_high": hi,
                "diff_vs_control": np.nan,
                "diff_ci_low": np.nan,
                "diff_ci_high": np.nan,
            }
            if not d.arm.control and n and nc:
                row["diff_vs_control"] = x / n - xc / nc
                row["diff_ci_low"], row["diff_ci_high"] = ts.newcombe_difference(x, n, xc, nc)
            rows.append(row)
    return rows


def _lab_columns(trial: Trial) -> list[tuple[str, float]]:
    keys: list[tuple[str, float]] = []
    for e in trial.endpoints:
        keys += [(e.quantity, 0.0), (e.quantity, e.day)]
    for r in trial.responders:
        for c in r.criteria:
            keys += [(c.quantity, 0.0), (c.quantity, c.day)]
    for s in trial.subgroups:
        if s.quantity not in COVARIATES:
            keys.append((s.quantity, 0.0))
    return list(dict.fromkeys(keys))


def _per_man(arms: list[ArmData], trial: Trial, flags: dict[int, dict[str, np.ndarray]]) -> pd.DataFrame:
    frames = []
    keys = _lab_columns(trial)
    for d in arms:
        cols: dict[str, Any] = {
            "arm": d.arm.name,
            "man_id": np.arange(len(d.men)) + d.index * trial.n_per_arm,
            "phenotype": [m.phenotype for m in d.men],
            "age": d.ages,
            "bmi": d.bmis,
        }
        for q, day in keys:
            cols[f"{q}_day{day:g}"] = lab(d, q, day, trial)
        sperm_days = sorted({day for q, day in keys if q == "sperm_concentration"})
        for day in sperm_days:
            cols[f"azoospermic_day{day:g}"] = labs.is_azoospermic(d.true_at("sperm_concentration", day))
        e2 = d.values[:, 1:, d.quantities.index("estradiol")]
        cols[f"estradiol_below_{E2_LOW_PG_ML:g}_any_day"] = (e2 < E2_LOW_PG_ML).any(axis=1) if e2.shape[1] else False
        for r in trial.responders:
            cols[r.slug] = flags[d.index][r.name]
        for s in trial.subgroups:
            codes = ts.subgroup_codes(_subgroup_values(d, s.quantity, trial) / s.per_unit, s.cuts)
            cols[f"subgroup_{s.name}"] = [s.labels()[c] for c in codes]
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)


def _bands(arms: list[ArmData], trial: Trial) -> pd.DataFrame:
    quantities = list(dict.fromkeys([e.quantity for e in trial.endpoints]))
    rows = []
    for d in arms:
        for q in quantities:
            y = d.series(q)
            pct = np.percentile(y, [5, 25, 50, 75, 95], axis=0)
            rows.append(
                pd.DataFrame(
                    {
                        "arm": d.arm.name,
                        "quantity": q,
                        "day": d.days,
                        "p5": pct[0],
                        "p25": pct[1],
                        "p50": pct[2],
                        "p75": pct[3],
                        "p95": pct[4],
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def _flags(arms: list[ArmData], trial: Trial) -> list[str]:
    out = []
    for d in arms:
        for f in protocol_flags(d.arm.protocol):
            out.append(f"arm '{d.arm.name}': {f}")
    for name in trial.phenotypes:
        status = get_phenotype(name).status
        if status != "calibrated":
            out.append(
                f"phenotype '{name}' is {status}: its own factors were set by hand, not fitted to the study set; "
                "treat the numbers as provisional"
            )
    for d in arms:
        e2 = d.values[:, 1:, d.quantities.index("estradiol")]
        k = int((e2 < E2_LOW_PG_ML).any(axis=1).sum()) if e2.shape[1] else 0
        if k:
            out.append(
                f"arm '{d.arm.name}': {k} of {len(d.men)} men ({100 * k / len(d.men):.0f}%) have estradiol below "
                f"{E2_LOW_PG_ML:g} pg/mL at some time (over-suppression; bone, libido and lipid risks noted, not modelled)"
            )
    return out


def analyse(arms: list[ArmData], trial: Trial) -> TrialResult:
    """Tables, per-man values, bands, flags and the published comparison from simulated arms."""
    from hpgsim.trial.published import compare_published

    flags = {d.index: responder_flags(d, trial) for d in arms}
    endpoints = pd.DataFrame(_endpoint_rows(arms, trial, None, (0,)))
    responders = pd.DataFrame(_responder_rows(arms, trial, flags, None), columns=RESPONDER_COLUMNS)
    sub_rows: list[dict[str, Any]] = []
    for si, s in enumerate(trial.subgroups):
        codes = {d.index: ts.subgroup_codes(_subgroup_values(d, s.quantity, trial) / s.per_unit, s.cuts) for d in arms}
        for li, label in enumerate(s.labels()):
            mask = {k: v == li for k, v in codes.items()}
            for row in _endpoint_rows(arms, trial, mask, (1, si, li)):
                sub_rows.append({"subgroup": s.name, "level": label, "kind": "endpoint", "name": row.pop("endpoint"), **row})
            for row in _responder_rows(arms, trial, flags, mask):
                row = {"subgroup": s.name, "level": label, "kind": "responder", "name": row.pop("responder"), **row}
                row["estimate"] = row.pop("rate")
                sub_rows.append(row)
    subgroups = pd.DataFrame(sub_rows, columns=SUBGROUP_COLUMNS)
    per_man = _per_man(arms, trial, flags)
    bands = _bands(arms, trial)
    published = compare_published(arms, trial)
    fl = _flags(arms, trial)
    return TrialResult(trial, endpoints, responders, subgroups, per_man, bands, published, fl, {})


def run_trial(
    trial: Trial | str | Path | dict[str, Any],
    out: str | Path | None = None,
    processes: int = 2,
    progress: Progress | None = None,
    n: int | None = None,
    seed: int | None = None,
    scheduler: str = "local",
) -> TrialResult:
    """Run a virtual trial (the engine behind :func:`hpgsim.trial` and `hpgsim trial`).

    Args:
        trial: a trial file path, a mapping in the trial-file format, or a validated Trial.
        out: if given, write every output there (docs/trials.md); nothing is written on failure.
        processes: worker processes for the simulations.
        progress: callback `(men done, men total)`.
        n, seed: override the file's n_per_arm and seed.
        scheduler: "local" (default), "processes:N" or "tcp://host:port" (Dask; hpgsim.distributed).
    """
    from importlib.metadata import version

    __version__ = version("hpgsim")
    from hpgsim.simulation import DISCLAIMER
    from hpgsim.trial.report import check_out

    t = as_trial(trial).with_overrides(n, seed)
    if out is not None:
        check_out(Path(out))
    t0 = time.perf_counter()
    arms = simulate_arms(t, processes=processes, progress=progress, scheduler=scheduler)
    t_sim = time.perf_counter() - t0
    res = analyse(arms, t)
    res.summary = {
        "kind": "hpgsim trial",
        "hpgsim_version": __version__,
        "disclaimer": DISCLAIMER,
        "trial": t.name,
        "source": t.source,
        "seed": t.seed,
        "n_per_arm": t.n_per_arm,
        "phenotypes": t.phenotypes,
        "arms": [{"name": a.arm.name, "control": a.arm.control, "duration_days": a.arm.protocol.duration_days} for a in arms],
        "model_digest": sorted({r.model_digest for a in arms for r in a.results[:1]}),
        "flags": res.flags,
        "endpoints": _records(res.endpoints),
        "responders": _records(res.responders),
        "subgroups": _records(res.subgroups),
        "published": _records(res.published),
        "timing_s": {"simulation": round(t_sim, 2), "total": round(time.perf_counter() - t0, 2)},
    }
    if out is not None:
        res.write(out)
    return res


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe rows: NaN becomes null, numpy scalars become Python numbers."""
    out = []
    for rec in df.to_dict(orient="records"):
        clean: dict[str, Any] = {}
        for k, v in rec.items():
            if isinstance(v, float | np.floating):
                clean[str(k)] = None if not np.isfinite(v) else float(f"{float(v):.6g}")
            elif isinstance(v, np.integer | np.bool_):
                clean[str(k)] = v.item()
            else:
                clean[str(k)] = v
        out.append(clean)
    return out
