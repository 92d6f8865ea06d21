"""Published numbers beside the trial's own: packaged study arms that report a trial endpoint.

Matching is generic, never per study: a study arm matches a treated trial arm when it gives the same
drugs (or drugs of the same classes), and it reports a quantity that is one of the trial's endpoint
quantities, at a day within the trial arm's duration. Our value is the same statistic (the study
file's, in its unit) computed on our arm's men who pass the study's day-0 inclusion filters, through
the observation model. Rows say whether the population matches (the study's phenotype is one of the
trial's) so that a comparison across populations is read as such.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hpgsim.errors import HpgsimError
from hpgsim.model.spec import load_model
from hpgsim.observe import labs
from hpgsim.protocol.schema import Protocol
from hpgsim.validation.run import Cohort, _per_unit, _statistic
from hpgsim.validation.studies import Study, load_studies, packaged_study_dir

if TYPE_CHECKING:
    from hpgsim.trial.run import ArmData
    from hpgsim.trial.schema import Trial

MIN_MEN = 5
SLACK = 1.05  # a study day up to 5% past the trial's last day is read on the last day
COLUMNS = [
    "study",
    "study_arm",
    "match",
    "population",
    "quantity",
    "unit",
    "day",
    "stat",
    "published",
    "ours",
    "our_arm",
    "our_n",
    "note",
]


@lru_cache(maxsize=1)
def _studies() -> tuple[Study, ...]:
    try:
        return tuple(load_studies([packaged_study_dir()]))
    except HpgsimError:  # a broken packaged study must not break a trial
        return ()


def _drugs(p: Protocol) -> frozenset[str]:
    return frozenset(r.drug for r in p.regimens)


def drug_match(ours: Protocol, theirs: Protocol) -> str | None:
    """'same drug', 'same class' or None (no match); untreated protocols never match."""
    a, b = _drugs(ours), _drugs(theirs)
    if not a or not b:
        return None
    if a == b:
        return "same drug"
    drugs = load_model().drugs
    if {drugs[d].drug_class for d in a} == {drugs[d].drug_class for d in b}:
        return "same class"
    return None


def _passes(study: Study, data: ArmData, rng: np.random.Generator) -> np.ndarray:
    """Our men whose screening labs (a draw of their own through the observation model, as in
    hpgsim.validation) pass the study's inclusion filters."""
    keep = np.ones(len(data.men), dtype=bool)
    for f in study.data.population.inclusion:
        if f.quantity not in data.quantities:
            continue
        v = labs.observe(f.quantity, data.true_at(f.quantity, 0.0), rng, age_years=data.ages) / _per_unit(f.quantity, f.unit)
        if f.min is not None:
            keep &= v >= f.min
        if f.max is not None:
            keep &= v <= f.max
    return keep


def compare_published(arms: list[ArmData], trial: Trial, studies: tuple[Study, ...] | None = None) -> pd.DataFrame:
    """One row per matching published observation (columns: COLUMNS)."""
    studies = _studies() if studies is None else studies
    quantities = {e.quantity for e in trial.endpoints}
    rows: list[dict[str, Any]] = []
    for d in arms:
        if d.arm.control:
            continue
        for st in studies:
            same_pop = st.data.population.phenotype in trial.phenotypes
            for ai, sarm in enumerate(st.data.arms):
                m = drug_match(d.arm.protocol, st.protocols[ai])
                if m is None:
                    continue
                keep = _passes(st, d, np.random.default_rng([trial.seed, d.index, ai, 31]))
                note = ""
                if st.data.population.inclusion:
                    if keep.sum() >= MIN_MEN:
                        note = f"our men passing the study's inclusion filters ({int(keep.sum())} of {keep.size})"
                    else:
                        note = f"only {int(keep.sum())} of our men pass the study's inclusion filters; all {keep.size} used"
                        keep[:] = True
                idx = np.flatnonzero(keep)
                men = Cohort.from_array(d.days, d.quantities, d.values[idx])
                ages = d.ages[idx]
                for oi, obs in enumerate(sarm.observations):
                    if obs.quantity not in quantities or obs.day is None or obs.among is not None:
                        continue
                    if obs.stat in ("median_time_to", "cumulative_below", "cumulative_above"):
                        continue
                    horizon = d.arm.protocol.duration_days
                    if obs.day <= 0 or obs.day > SLACK * horizon + 1e-9:
                        continue
                    obs_note = note
                    if obs.day > horizon:  # e.g. "4 months" (121.8 d) against a 17-week (119 d) trial
                        obs_note = "; ".join(x for x in (note, f"ours read on day {horizon:g}, our last day") if x)
                        obs = obs.model_copy(update={"day": horizon})
                    rng = np.random.default_rng([trial.seed, d.index, ai, oi, 29])
                    ours = _statistic(obs, men, ages, rng)
                    rows.append(
                        {
                            "study": st.id,
                            "study_arm": sarm.name,
                            "match": m,
                            "population": "same phenotype" if same_pop else f"other phenotype ({st.data.population.phenotype})",
                            "quantity": obs.quantity,
                            "unit": obs.unit or "",
                            "day": sarm.observations[oi].day,
                            "stat": obs.stat,
                            "published": obs.value,
                            "ours": float(ours) if np.isfinite(ours) else np.nan,
                            "our_arm": d.arm.name,
                            "our_n": len(idx),
                            "note": obs_note,
                        }
                    )
    df = pd.DataFrame(rows, columns=COLUMNS)
    if len(df):
        order = {"same drug": 0, "same class": 1}
        df = (
            df.assign(_p=df["population"].ne("same phenotype"), _m=df["match"].map(order))
            .sort_values(["_p", "_m", "study", "quantity", "day"], kind="stable")
            .drop(columns=["_p", "_m"])
            .reset_index(drop=True)
        )
    return df
