"""Trial statistics over virtual men: estimates, bootstrap CIs, differences vs control, responder logic.

Pure functions of per-man arrays and seeded generators; no dynamics, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hpgsim.observe.stats import wilson_interval

Estimator = Callable[[np.ndarray, np.ndarray], np.ndarray]


def estimator(statistic: str, threshold: float | None = None) -> Estimator:
    """A vectorised estimator `f(baseline, later) -> value` over the last axis.

    Both arrays have shape (..., n_men) in the reporting unit; the result has shape (...,).
    `mean_change` = mean(later - baseline); `percent_change` = 100 (mean(later) / mean(baseline) - 1),
    the change of the group means that trial reports usually give; `proportion_*` = share of men with
    `later` above / below `threshold` (0..1).
    """
    if statistic == "mean":
        return lambda b, a: np.mean(a, axis=-1)
    if statistic == "median":
        return lambda b, a: np.median(a, axis=-1)
    if statistic == "mean_change":
        return lambda b, a: np.mean(a - b, axis=-1)
    if statistic == "percent_change":
        return lambda b, a: 100.0 * (np.mean(a, axis=-1) / np.mean(b, axis=-1) - 1.0)
    if statistic in ("proportion_above", "proportion_below"):
        if threshold is None:
            raise ValueError(f"{statistic} needs a threshold")
        thr = float(threshold)
        if statistic == "proportion_above":
            return lambda b, a: np.mean(a > thr, axis=-1)
        return lambda b, a: np.mean(a < thr, axis=-1)
    raise ValueError(f"unknown statistic {statistic!r}")


def bootstrap_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Resampling indices, shape (n_boot, n): men drawn with replacement."""
    return rng.integers(0, n, size=(n_boot, n))


def estimate_with_ci(
    f: Estimator, baseline: np.ndarray, later: np.ndarray, n_boot: int, rng: np.random.Generator
) -> tuple[float, float, float, np.ndarray]:
    """Point estimate, 95% percentile-bootstrap CI over men, and the bootstrap replicates.

    Args:
        baseline, later: shape (n_men,).

    Returns:
        (estimate, lo, hi, replicates of shape (n_boot,)); NaN everywhere when there are no men.
    """
    b, a = np.asarray(baseline, dtype=float), np.asarray(later, dtype=float)
    if b.size == 0:
        return float("nan"), float("nan"), float("nan"), np.full(n_boot, np.nan)
    est = float(f(b, a))
    idx = bootstrap_indices(b.size, n_boot, rng)
    reps = np.asarray(f(b[idx], a[idx]), dtype=float)
    lo, hi = _percentile_ci(reps)
    return est, lo, hi, reps


def _percentile_ci(reps: np.ndarray) -> tuple[float, float]:
    finite = reps[np.isfinite(reps)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return float(lo), float(hi)


def difference_ci(reps_arm: np.ndarray, reps_control: np.ndarray) -> tuple[float, float]:
    """95% CI of arm minus control from independent bootstrap replicates of each (parallel arms)."""
    return _percentile_ci(np.asarray(reps_arm) - np.asarray(reps_control))


def wilson(successes: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion."""
    return wilson_interval(successes / n if n else 0.0, n)


def newcombe_difference(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Newcombe's hybrid score 95% interval of p1 - p2 (method 10, from the two Wilson intervals)."""
    if n1 == 0 or n2 == 0:
        return float("nan"), float("nan")
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1)
    l2, u2 = wilson(x2, n2)
    d = p1 - p2
    lo = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return float(lo), float(hi)


def criterion_met(
    value: np.ndarray,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    below: float | None = None,
) -> np.ndarray:
    """Per man, whether `value` satisfies every given bound (>= min, <= max, > above, < below).

    NaN values never satisfy a bound.
    """
    v = np.asarray(value, dtype=float)
    ok = np.isfinite(v) | np.isinf(v)
    with np.errstate(invalid="ignore"):
        if min is not None:
            ok &= v >= min
        if max is not None:
            ok &= v <= max
        if above is not None:
            ok &= v > above
        if below is not None:
            ok &= v < below
    return ok & ~np.isnan(v)


def change_of(of: str, baseline: np.ndarray, later: np.ndarray) -> np.ndarray:
    """Per-man value a criterion reads: the level, the change, or the % change from baseline.

    A % change from a zero baseline (azoospermia) is +inf when the later value is positive, 0 when it
    is zero too.
    """
    b, a = np.asarray(baseline, dtype=float), np.asarray(later, dtype=float)
    if of == "level":
        return a
    if of == "change":
        return a - b
    if of == "percent_change":
        with np.errstate(divide="ignore", invalid="ignore"):
            pc = 100.0 * (a / b - 1.0)
        pc = np.where(b > 0, pc, np.where(a > 0, np.inf, 0.0))
        return pc
    raise ValueError(f"unknown criterion base {of!r}")


def combine(flags: list[np.ndarray], require_all: bool) -> np.ndarray:
    """AND (require_all) or OR of per-man boolean arrays."""
    stack = np.stack([np.asarray(f, dtype=bool) for f in flags])
    return np.asarray(stack.all(axis=0) if require_all else stack.any(axis=0))


def subgroup_codes(values: np.ndarray, cuts: tuple[float, ...] | list[float]) -> np.ndarray:
    """Index of each man's band: 0 for value < cuts[0], k for cuts[k-1] <= value < cuts[k], len(cuts) above."""
    return np.searchsorted(np.asarray(cuts, dtype=float), np.asarray(values, dtype=float), side="right")
