"""Cohort statistics in the vocabulary of the study files (data/studies/SCHEMA.md).

Pure functions over arrays of men x days; no dynamics, no I/O. Levels and sampled proportions take
observed (noisy) values; `median_time_to` and `cumulative_*` take each man's underlying trajectory.
"""

from __future__ import annotations

import numpy as np


def at_day(days: np.ndarray, trajectories: np.ndarray, day: float) -> np.ndarray:
    """Each man's value at `day`: linear interpolation between output days, held at the ends.

    Row by row the same numbers as ``np.interp(day, days, row)``, for all men at once.

    Args:
        days: shape (n_days,), ascending.
        trajectories: shape (n_men, n_days).
    """
    m, d = np.asarray(trajectories, dtype=float), np.asarray(days, dtype=float)
    j = int(np.searchsorted(d, day))
    if j < d.size and d[j] == day:
        return m[:, j].copy()
    if j == 0:
        return m[:, 0].copy()
    if j >= d.size:
        return m[:, -1].copy()
    slope = (m[:, j] - m[:, j - 1]) / (d[j] - d[j - 1])
    return slope * (day - d[j - 1]) + m[:, j - 1]


def level(stat: str, values: np.ndarray) -> float:
    """mean | median | geometric_mean of values, shape (n_men,)."""
    v = np.asarray(values, dtype=float)
    if stat == "mean":
        return float(np.mean(v))
    if stat == "median":
        return float(np.median(v))
    if stat == "geometric_mean":
        return float(np.exp(np.mean(np.log(np.maximum(v, 1e-300)))))
    raise ValueError(f"not a level statistic: {stat!r}")


def change(stat: str, baseline: np.ndarray, later: np.ndarray) -> float:
    """percent_change or fold_change of the cohort mean at a later day versus day 0.

    Both arrays have shape (n_men,). The change of means is what trial abstracts usually report.
    """
    b, a = float(np.mean(baseline)), float(np.mean(later))
    if stat == "percent_change":
        return 100.0 * (a / b - 1.0)
    if stat == "fold_change":
        return a / b
    raise ValueError(f"not a change statistic: {stat!r}")


def proportion(values: np.ndarray, threshold: float, below: bool) -> float:
    """Share of men whose sampled value is below (or above) `threshold`; values shape (n_men,)."""
    v = np.asarray(values, dtype=float)
    return float(np.mean(v < threshold) if below else np.mean(v > threshold))


def first_crossing_days(trajectories: np.ndarray, days: np.ndarray, threshold: float, below: bool, from_day: float) -> np.ndarray:
    """Per man, days from `from_day` to the first day (daily resolution) past the threshold; inf if never.

    Args:
        trajectories: shape (n_men, n_days), underlying (noise-free) values.
        days: shape (n_days,), ascending.
    """
    y = np.asarray(trajectories, dtype=float)
    d = np.asarray(days, dtype=float)
    window = d >= from_day
    crossed = (y < threshold) if below else (y > threshold)
    crossed = crossed & window[None, :]
    any_cross = crossed.any(axis=1)
    first = np.argmax(crossed, axis=1)
    out = np.where(any_cross, d[first] - from_day, np.inf)
    return out


def median_time_to(trajectories: np.ndarray, days: np.ndarray, threshold: float, below: bool, from_day: float) -> float:
    """Median over men of the time to cross the threshold; inf when fewer than half the men ever do."""
    t = first_crossing_days(trajectories, days, threshold, below, from_day)
    return float(np.median(t))


def cumulative(trajectories: np.ndarray, days: np.ndarray, threshold: float, below: bool, from_day: float, day: float) -> float:
    """Share of men who crossed the threshold at any time between `from_day` and `day` (inclusive)."""
    t = first_crossing_days(trajectories, days, threshold, below, from_day)
    return float(np.mean(t <= day - from_day))


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion `p` observed in `n` men."""
    if n <= 0:
        return (0.0, 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))
