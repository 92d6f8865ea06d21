"""The observation model: what a lab or a semen analysis reports for a man's true (model) value.

Pure functions of arrays and a seeded generator; no dynamics. Model outputs are taken as the
morning (08:00) value; a draw later in the day lowers testosterone (physiology.yaml diurnal:
-20 to -25% from 08:00 to 16:00 at 30-40 y, -10% at 70 y). Within-person variability is log-normal
with the CVs below (physiology.yaml variability), applied to the reported value.
"""

from __future__ import annotations

import numpy as np

# Within-person (biological + assay) CV, as fractions.
WITHIN_PERSON_CV: dict[str, float] = {
    "total_testosterone": 0.16,  # Norwegian weekly-sampling study (physiology.yaml hormone_within_person_cv)
    "free_testosterone": 0.16,  # assumed equal to total T
    "bioavailable_testosterone": 0.16,  # assumed equal to total T
    "estradiol": 0.14,
    "lh": 0.26,
    "fsh": 0.08,
    "shbg": 0.074,
    "inhibin_b": 0.15,  # assumed (no within-person CV in the research notes)
    "sperm_concentration": 0.39,  # semen_within_person_cv
    "semen_volume": 0.28,
    "total_sperm_count": 0.55,
    "total_motile_count": 0.55,  # assumed equal to total count
    "progressive_motility": 0.15,  # assumed
}
DIURNAL_QUANTITIES = ("total_testosterone", "free_testosterone", "bioavailable_testosterone")
AZOOSPERMIA_1E6_PER_ML = 0.01


def diurnal_factor(hour: float | np.ndarray, age_years: float | np.ndarray) -> np.ndarray:
    """Testosterone at `hour` (0-24) relative to 08:00.

    Linear fall from 08:00 to 16:00 of 22.5% at 30-40 y, shrinking linearly to 10% at 70 y (and held
    beyond 30-70 y); before 08:00 the 08:00 value, after 16:00 the 16:00 value.

    Args:
        hour: clock hour of the draw, any shape.
        age_years: age, broadcastable with `hour`.
    """
    h = np.clip(np.asarray(hour, dtype=float), 8.0, 16.0)
    age = np.clip(np.asarray(age_years, dtype=float), 35.0, 70.0)
    drop = 0.225 + (0.10 - 0.225) * (age - 35.0) / 35.0
    return 1.0 - drop * (h - 8.0) / 8.0


def observe(
    quantity: str,
    true_values: np.ndarray,
    rng: np.random.Generator,
    hour: float = 8.0,
    age_years: float | np.ndarray = 35.0,
) -> np.ndarray:
    """What the lab reports: the true values with diurnal timing and within-person log-normal noise.

    Args:
        quantity: canonical name (DESIGN.md section 2).
        true_values: model values in canonical units, any shape (e.g. (n_men,) or (n_men, n_days)).
        rng: seeded generator (results are reproducible for a given seed).
        hour: clock hour of the blood draw (default 08:00).
        age_years: age of each man, broadcastable with `true_values` (for the diurnal fall of T).

    Returns:
        Reported values, same shape; the median of the noise is the true value. Quantities without a
        known CV (ratios, drug levels) are returned unchanged except for diurnal timing.
    """
    x = np.asarray(true_values, dtype=float)
    if quantity in DIURNAL_QUANTITIES:
        x = x * diurnal_factor(hour, age_years)
    cv = WITHIN_PERSON_CV.get(quantity)
    if quantity == "te_ratio":  # ratio of two noisy labs
        s = np.sqrt(np.log1p(WITHIN_PERSON_CV["total_testosterone"] ** 2) + np.log1p(WITHIN_PERSON_CV["estradiol"] ** 2))
        return x * np.exp(s * rng.standard_normal(x.shape))
    if cv is None:
        return x
    sigma = np.sqrt(np.log1p(cv**2))
    return x * np.exp(sigma * rng.standard_normal(x.shape))


def is_azoospermic(concentration_1e6_per_ml: np.ndarray) -> np.ndarray:
    """Azoospermia: a sperm concentration below 0.01 million/mL (DESIGN.md section 1)."""
    return np.asarray(concentration_1e6_per_ml) < AZOOSPERMIA_1E6_PER_ML
