"""Scoring of validation results (issue 3's published rules), recomputable from the JSON fields.

Rules: a mean/median at day > 0 with a day-0 row compares changes from baseline: within if
|sim change - obs change| <= max(1.96 SE of the observed change, 25% of |obs change|, 5% of the
baseline); direction right if the signs agree. Day-0 (or unpaired) levels: within max(1.96 SE, 20%).
Percent/fold changes: within max(1.96 SE, 25% of the change, 5 points / 0.1). Proportions and
cumulative shares: inside the Wilson 95% interval widened by 0.05. Median times: within 30%.
"""

from __future__ import annotations

import math
from typing import Any

from hpgsim.observe.stats import wilson_interval
from hpgsim.validation.studies import Observation, Study

LEVELS = ("mean", "median", "geometric_mean")


def _se(obs: Observation, n: int) -> float:
    if obs.se is not None:
        return obs.se
    if obs.sd is not None:
        return obs.sd / math.sqrt(max(n, 1))
    if obs.ci95 is not None:
        return (obs.ci95[1] - obs.ci95[0]) / 3.92
    return 0.0


def tolerance(obs: Observation, base_obs: Observation | None, n: int, n0: int) -> float:
    """How far a simulated value (or change) may be from the observed one and still count as within.

    `base_obs` is the day-0 row of the same quantity and statistic for a later mean/median (the
    comparison is then of changes from baseline); `n`, `n0` are the rows' sample sizes. Proportions use
    the Wilson interval instead (in :func:`score_study`).
    """
    if obs.stat in LEVELS and base_obs is not None:
        se = math.hypot(_se(obs, n), _se(base_obs, n0))
        return max(1.96 * se, 0.25 * abs(obs.value - base_obs.value), 0.05 * abs(base_obs.value))
    if obs.stat in LEVELS:
        return max(1.96 * _se(obs, n), 0.20 * abs(obs.value))
    if obs.stat == "percent_change":
        return max(1.96 * _se(obs, n), 0.25 * abs(obs.value), 5.0)
    if obs.stat == "fold_change":
        return max(1.96 * _se(obs, n), 0.25 * abs(obs.value - 1.0), 0.1)
    return 0.30 * abs(obs.value)  # median times


def score_study(study: Study, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add `within`, `direction_right` (or None) and `rule` to each result row of one study."""
    out = []
    k = 0
    for arm in study.data.arms:
        arm_rows = rows[k : k + len(arm.observations)]
        k += len(arm.observations)
        for obs, row in zip(arm.observations, arm_rows, strict=True):
            n = obs.n or arm.n
            sim = row["simulated"]
            res = dict(row)
            res["observed_se"] = _se(obs, n) or None
            if sim is None:
                res.update(within=False, direction_right=None, rule="no simulated value")
                out.append(res)
                continue
            if obs.stat in LEVELS:
                base = next(
                    (
                        (o, r)
                        for o, r in zip(arm.observations, arm_rows, strict=True)
                        if o.quantity == obs.quantity and o.stat == obs.stat and o.day == 0 and o.among is None
                    ),
                    None,
                )
                if obs.day and obs.day > 0 and base is not None and base[1]["simulated"] is not None:
                    o0, r0 = base
                    d_obs = obs.value - o0.value
                    d_sim = sim - r0["simulated"]
                    tol = tolerance(obs, o0, n, o0.n or arm.n)
                    res.update(within=abs(d_sim - d_obs) <= tol, direction_right=(d_sim >= 0) == (d_obs >= 0), rule="change")
                else:
                    tol = tolerance(obs, None, n, n)
                    res.update(within=abs(sim - obs.value) <= tol, direction_right=None, rule="level")
            elif obs.stat in ("percent_change", "fold_change"):
                ref = 0.0 if obs.stat == "percent_change" else 1.0
                tol = tolerance(obs, None, n, n)
                res.update(
                    within=abs(sim - obs.value) <= tol,
                    direction_right=(sim - ref >= 0) == (obs.value - ref >= 0),
                    rule="relative change",
                )
            elif obs.stat == "median_time_to":
                res.update(within=abs(sim - obs.value) <= tolerance(obs, None, n, n), direction_right=None, rule="median time")
            else:
                lo, hi = wilson_interval(obs.value, n)
                res.update(within=lo - 0.05 <= sim <= hi + 0.05, direction_right=None, rule="proportion")
            out.append(res)
    return out


def summarize(scored: list[dict[str, Any]]) -> dict[str, Any]:
    """Share within and share of directions right (over rows where a direction applies)."""
    n = len(scored)
    within = sum(bool(r["within"]) for r in scored)
    dirs = [r["direction_right"] for r in scored if r["direction_right"] is not None]
    return {
        "observations": n,
        "within": within,
        "within_fraction": within / n if n else None,
        "directions": len(dirs),
        "directions_right": sum(dirs),
        "direction_fraction": sum(dirs) / len(dirs) if dirs else None,
    }
