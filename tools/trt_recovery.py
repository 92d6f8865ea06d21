"""Recovery of the typical healthy man after testosterone enanthate 200 mg weekly, by treatment length.

    python tools/trt_recovery.py              # 3, 6, 12, 24 and 48 months of TE
    python tools/trt_recovery.py 6 18         # chosen lengths, in months

For each length: days from the last dose's week (the stop) until sperm concentration is back to 20 M/mL
and to half its baseline; the lowest total T after the stop; the highest LH and FSH after the stop (the
rebound above baseline that Wallace1993 saw in recovering men) and the day LH is back within 10% of
baseline. Quoted in docs/validation.md ("Recovery after TE, by treatment length").
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd

from hpgsim.population.phenotypes import typical_patient
from hpgsim.simulation import simulate


def _first_day(s: pd.Series, ok: np.ndarray, stop: float) -> float:
    return float(s.index[np.argmax(ok)] - stop) if ok.any() else float("nan")


def recovery(months: float) -> dict[str, float]:
    """Recovery measures (days after the stop, levels in canonical units) after `months` of TE."""
    weeks = round(months * 52 / 12)
    stop = 7.0 * weeks
    protocol = {
        "duration": f"{weeks + 78} week",
        "regimens": [{"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week", "stop": f"{weeks} week"}],
    }
    d = simulate(protocol, patient=typical_patient("healthy"), output_step_h=24).observables
    b = d.iloc[0]
    after = d.loc[stop + 1 :]
    sc = after.sperm_concentration
    lh_back = (after.lh - b.lh).abs().to_numpy() <= 0.1 * b.lh
    rebound = after.loc[: stop + 30]
    return {
        "months": months,
        "sperm_20": _first_day(sc, sc.to_numpy() >= 20.0, stop),
        "sperm_half": _first_day(sc, sc.to_numpy() >= 0.5 * b.sperm_concentration, stop),
        "t_nadir_fold": float(after.total_testosterone.loc[: stop + 60].min() / b.total_testosterone),
        "lh_peak_fold": float(rebound.lh.max() / b.lh),
        "fsh_peak_fold": float(rebound.fsh.max() / b.fsh),
        "lh_back": _first_day(after.lh, lh_back & (after.index.to_numpy() > float(rebound.lh.idxmax())), stop),
    }


def main(argv: list[str]) -> None:
    warnings.filterwarnings("ignore")
    lengths = [float(a) for a in argv] or [3, 6, 12, 24, 48]
    print("TE 200 mg weekly, typical healthy man; days counted from the stop (one week after the last dose's day)")
    print("months  to 20 M/mL  to half baseline  T nadir (fold)  LH peak (fold)  FSH peak (fold)  LH within 10% (day)")
    for m in lengths:
        r = recovery(m)
        print(
            f"{m:6.0f}  {r['sperm_20']:10.0f}  {r['sperm_half']:16.0f}  {r['t_nadir_fold']:14.2f}  "
            f"{r['lh_peak_fold']:14.2f}  {r['fsh_peak_fold']:15.2f}  {r['lh_back']:19.0f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
