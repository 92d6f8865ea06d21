"""Run study files against virtual cohorts and score them (SCHEMA.md, `hpgsim validate`).

For each arm: draw men from the study's phenotype (age and BMI narrowed to the study's mean and SD),
keep those passing the day-0 inclusion filters (rejection sampling on their steady state), simulate
the arm's protocol for all of them, and compute every observation's statistic in its own unit through
the observation model. Confidence intervals: bootstrap over virtual men.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from hpgsim.distributed import run_population
from hpgsim.engine.steady import steady_state
from hpgsim.errors import SpecError
from hpgsim.observe import labs, stats
from hpgsim.population.phenotypes import Patient, get_phenotype, sample_patients
from hpgsim.simulation import model_for, observe_states
from hpgsim.units import to_canonical
from hpgsim.validation.studies import Observation, Study, published_fields

BOOTSTRAP = 200
# Solver tolerance for cohorts: observation noise (CVs of 10-40%) dwarfs the integration error. Measured
# on the whole study set at n = 12 (docs/validation.md): rtol 1e-3 vs 1e-4 changes the statistics by a
# median 1e-5 and at most 2% (RepetitiveGnRH_IHH LH), and takes 22% less time (1e-4 was itself ~40%
# faster than the engine's default 1e-6 on bolus-heavy arms).
VALIDATION_RTOL = 1e-3


def _per_unit(quantity: str, unit: str | None) -> float:
    """Canonical value of one `unit` of `quantity` (all conversions used here are linear)."""
    return 1.0 if unit is None else to_canonical(quantity, 1.0, unit)


def draw_cohort(study: Study, arm_index: int, n: int, seed: int, max_draws: int = 50) -> list[Patient]:
    """Men of the study's phenotype who pass its day-0 inclusion filters (rejection sampling).

    Raises:
        SpecError: fewer than `n` men pass after `max_draws` x n candidates (a nearly impossible filter).
    """
    pop = study.data.population
    ph = get_phenotype(pop.phenotype)
    spec = model_for(study.protocols[arm_index])
    rng_seed = seed
    kept: list[Patient] = []
    tried = 0
    while len(kept) < n:
        batch = sample_patients(ph.name, n, seed=rng_seed)
        rng_seed += 7919
        rng = np.random.default_rng(rng_seed)
        for man in batch:
            tried += 1
            params = dict(man.parameters)
            if pop.age_years is not None:
                params["age"] = pop.age_years.draw(rng, floor=18.0)
            if pop.bmi_kg_m2 is not None:
                params["bmi"] = pop.bmi_kg_m2.draw(rng, floor=16.0)
            cand = replace(man, name=f"{study.id} arm {arm_index + 1} #{len(kept)}", parameters=params)
            if _passes(cand, study, spec, rng):
                kept.append(cand)
                if len(kept) == n:
                    break
        if tried >= max_draws * n and len(kept) < n:
            raise SpecError(
                f"{study.source}: only {len(kept)} of {tried} virtual {ph.name} men pass the inclusion filters; "
                "the filters are nearly impossible for this phenotype. Check the filters or the phenotype."
            )
    return kept


def _passes(man: Patient, study: Study, spec: Any, rng: np.random.Generator) -> bool:
    """Whether the man's screening labs pass the study's inclusion filters.

    A screening lab is a draw of its own through the observation model (morning, within-person
    noise), as in a real trial: men enter on one measurement, so a cohort selected on a low value
    regresses towards its mean by day 0 (Leder2004: entry T < 350 ng/dL, mean day-0 T 343).
    """
    filters = study.data.population.inclusion
    if not filters:
        return True
    p = man.vector(spec)
    y0 = steady_state(spec, p, patient=man.name)
    base = observe_states(spec, p, y0[None, :], np.array([0.0])).iloc[0]
    age = np.array([man.parameters["age"]])
    for f in filters:
        v = float(labs.observe(f.quantity, np.array([float(base[f.quantity])]), rng, age_years=age)[0])
        v /= _per_unit(f.quantity, f.unit)
        if (f.min is not None and v < f.min) or (f.max is not None and v > f.max):
            return False
    return True


class Cohort:
    """The men of one arm as arrays: each observable a (n_men, n_days) matrix on the shared day grid.

    Built once per arm, so that a statistic and its 200 bootstrap resamples are array indexing, not
    per-man pandas look-ups (which took most of a validation run). A resample (`take`) keeps only the
    men's positions; a quantity is indexed when a statistic reads it, so a resample never copies the
    other quantities' trajectories.
    """

    def __init__(self, days: np.ndarray, columns: dict[str, np.ndarray], idx: np.ndarray | None = None) -> None:
        self.days = days
        self._columns = columns
        self._idx = idx

    @classmethod
    def from_array(cls, days: np.ndarray, quantities: list[str], values: np.ndarray) -> Cohort:
        """From values of shape (n_men, n_days, n_quantities)."""
        return cls(np.asarray(days, dtype=float), {q: values[:, :, j] for j, q in enumerate(quantities)})

    @classmethod
    def from_frames(cls, frames: list[pd.DataFrame]) -> Cohort:
        if not frames:
            return cls(np.zeros(0), {})
        stacked = np.stack([f.to_numpy(dtype=float) for f in frames])  # (men, days, quantities)
        return cls.from_array(frames[0].index.to_numpy(dtype=float), list(frames[0].columns), stacked)

    def __len__(self) -> int:
        if self._idx is not None:
            return int(self._idx.size)
        return next(iter(self._columns.values())).shape[0] if self._columns else 0

    def take(self, idx: np.ndarray) -> Cohort:
        """The men at positions `idx` (repeats allowed: a bootstrap resample)."""
        return Cohort(self.days, self._columns, idx if self._idx is None else self._idx[idx])

    def has(self, quantity: str) -> bool:
        """Whether the arm's model outputs `quantity` (a drug's concentration only when the drug is given)."""
        return quantity in self._columns

    def trajectories(self, quantity: str) -> np.ndarray:
        """Underlying values, shape (n_men, n_days)."""
        m = self._columns[quantity]
        return m if self._idx is None else m[self._idx]

    def at(self, quantity: str, day: float) -> np.ndarray:
        """Each man's underlying value at `day` (linear interpolation between output days, held at the ends)."""
        v = stats.at_day(self.days, self._columns[quantity], day)
        return v if self._idx is None else v[self._idx]


def _statistic(obs: Observation, men: Cohort, ages: np.ndarray, rng: np.random.Generator) -> float:
    q, unit = obs.quantity, obs.unit
    per = _per_unit(q, unit)
    if obs.stat in ("mean", "median", "geometric_mean"):
        assert obs.day is not None
        vals = labs.observe(q, men.at(q, obs.day), rng, age_years=ages) / per
        return stats.level(obs.stat, vals)
    if obs.stat in ("percent_change", "fold_change"):
        assert obs.day is not None
        b = labs.observe(q, men.at(q, 0.0), rng, age_years=ages)
        a = labs.observe(q, men.at(q, obs.day), rng, age_years=ages)
        return stats.change(obs.stat, b, a)
    if obs.stat in ("proportion_below", "proportion_above"):
        assert obs.day is not None and obs.threshold is not None
        vals = labs.observe(q, men.at(q, obs.day), rng, age_years=ages) / per
        return stats.proportion(vals, obs.threshold, below=obs.stat.endswith("below"))
    days = men.days
    traj = men.trajectories(q) / per
    if obs.stat == "median_time_to":
        below = obs.below is not None
        thr = obs.below if below else obs.above
        assert thr is not None and obs.from_day is not None
        return stats.median_time_to(traj, days, thr, below, obs.from_day)
    assert obs.threshold is not None and obs.from_day is not None and obs.day is not None
    return stats.cumulative(traj, days, obs.threshold, obs.stat.endswith("below"), obs.from_day, obs.day)


def _among(obs: Observation, men: Cohort) -> np.ndarray:
    """Positions of the men an observation is restricted to (all men without `among`)."""
    a = obs.among
    if a is None:
        return np.arange(len(men))
    vals = men.at(a.quantity, a.day) / _per_unit(a.quantity, a.unit)
    keep = np.ones(len(men), dtype=bool)
    if a.below is not None:
        keep &= vals < a.below
    if a.above is not None:
        keep &= vals > a.above
    return np.flatnonzero(keep)


def output_step_h(study: Study, arm_index: int) -> float:
    """Output spacing fine enough for the arm's observation days (minutes for bolus tests)."""
    prot = study.protocols[arm_index]
    days = [o.day for o in study.data.arms[arm_index].observations if o.day is not None]
    if prot.duration_h <= 24.0:
        return 1.0 / 60.0
    if any(d < 7 and abs(d - round(d)) > 1e-9 for d in days):  # hours after a dose
        return 0.25
    return 24.0  # later days (e.g. 91.32 = 3 months) are interpolated between daily rows


def run_study(
    study: Study,
    n: int = 200,
    seed: int = 0,
    processes: int = 2,
    bands: dict[tuple[str, str, str], pd.DataFrame] | None = None,
    scheduler: str = "local",
) -> list[dict[str, Any]]:
    """Simulate every arm of a study and return one result row per observation, in file order.

    Args:
        bands: if given, filled with the cohort's 5/25/50/75/95th percentiles over time, keyed by
            (arm name, quantity, unit), for each quantity observed as a level (for the report).
        scheduler: "local" (`processes` worker processes), "processes:N" or "tcp://host:port" (Dask; see
            hpgsim.distributed.run_population).
    """
    rows: list[dict[str, Any]] = []
    for ai, arm in enumerate(study.data.arms):
        men = draw_cohort(study, ai, n, seed + 1000 * ai)
        results = run_population(
            study.protocols[ai],
            men,
            scheduler=scheduler,
            processes=processes,
            output_step_h=output_step_h(study, ai),
            rtol=VALIDATION_RTOL,
        )
        frames = [r.observables for r in results]
        cohort = Cohort.from_frames(frames)
        ages = np.array([m.parameters["age"] for m in men])
        if bands is not None:
            for obs in arm.observations:
                key = (arm.name, obs.quantity, obs.unit or "")
                if obs.stat in ("mean", "median", "geometric_mean") and key not in bands:
                    traj = cohort.trajectories(obs.quantity) / _per_unit(obs.quantity, obs.unit)
                    pct = np.percentile(traj, [5, 25, 50, 75, 95], axis=0).T
                    bands[key] = pd.DataFrame(pct, index=frames[0].index, columns=["p5", "p25", "p50", "p75", "p95"])
        for oi, obs in enumerate(arm.observations):
            absent = [q for q in (obs.quantity, obs.among.quantity if obs.among else None) if q and not cohort.has(q)]
            if absent:
                rows.append(
                    {
                        **published_fields(study, arm.name, obs),
                        "simulated": None,
                        "simulated_ci95": None,
                        "n_virtual": 0,
                        "error": f"{study.source}, arm '{arm.name}', observation {oi + 1}: {absent[0]} is not an output of "
                        "this arm (a drug's concentration needs that drug in the arm's protocol).",
                    }
                )
                continue
            pos = _among(obs, cohort)
            sub, sub_ages = cohort.take(pos), ages[pos]
            rng = np.random.default_rng([seed, ai, oi])
            if not pos.size:
                sim, ci = None, None
            else:
                sim = _statistic(obs, sub, sub_ages, rng)
                boot = []
                for _ in range(BOOTSTRAP):
                    idx = rng.integers(0, pos.size, pos.size)
                    boot.append(_statistic(obs, sub.take(idx), sub_ages[idx], rng))
                finite = np.array([b for b in boot if np.isfinite(b)])
                ci = [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))] if finite.size else None
            rows.append(
                {
                    **published_fields(study, arm.name, obs),
                    "simulated": None if sim is None or not np.isfinite(sim) else float(sim),
                    "simulated_ci95": ci,
                    "n_virtual": int(pos.size),
                }
            )
    return rows
