"""Human feedback experiments of physiology.yaml (feedback_experiments) replayed on the typical healthy man.

    python tools/feedback_experiments.py

1. Stepped E2-patch add-back under letrozole 2.5 mg/day (estradiol_clamp_under_letrozole; 10 young men):
   T 955 ng/dL at E2 12.6 pg/mL with no patch, 179 at 68.6 pg/mL with 100 ug/day.
2. T add-back with aromatase blocked (testosterone_infusion_with_aromatase_blocked): T 15 mg/day for 4 days
   under testolactone, E2 unchanged; LH 14.5 -> 8.0, FSH 9.9 -> 5.8 IU/L.
Values at day 28 (1) and day 14 (2), read at the morning dose time. Quoted in docs/model.md.
"""

from __future__ import annotations

import warnings

from hpgsim.simulation import simulate

LETROZOLE = [{"drug": "letrozole", "dose": "2.5 mg", "every": "1 day"}]
QUANTITIES = ["estradiol", "total_testosterone", "lh", "fsh"]


def day(regimens: list[dict], duration: str, at: float) -> dict[str, float]:
    obs = simulate({"duration": duration, "regimens": regimens}, phenotype="healthy", output_step_h=24).observables
    return {q: float(obs[q].loc[at]) for q in QUANTITIES}


def fmt(v: dict[str, float]) -> str:
    return f"E2 {v['estradiol']:5.1f} pg/mL, T {v['total_testosterone']:5.0f} ng/dL, LH {v['lh']:5.2f}, FSH {v['fsh']:5.2f} IU/L"


def main() -> None:
    warnings.filterwarnings("ignore")
    print("1. E2 patch under letrozole 2.5 mg/day, day 28 (published: no patch E2 12.6, T 955; 100 ug/day E2 68.6, T 179)")
    t = {}
    for ug in (0, 25, 50, 100):
        regs = LETROZOLE + ([{"drug": "estradiol_patch", "dose": f"{ug} ug", "every": "1 day"}] if ug else [])
        v = day(regs, "28 day", 28.0)
        t[ug] = v["total_testosterone"]
        print(f"  {ug:3d} ug/day: {fmt(v)}")
    print(f"  T with no patch / T with 100 ug/day: {t[0] / t[100]:.1f} (published 5.3)")
    print("2. T gel 150 mg/day (15 mg absorbed) on days 10-14 of letrozole, day 14 (published LH x0.55, FSH x0.59)")
    alone = day(LETROZOLE, "14 day", 14.0)
    with_t = day(
        [*LETROZOLE, {"drug": "testosterone_gel", "dose": "150 mg", "every": "1 day", "start": "10 day"}], "14 day", 14.0
    )
    print(f"  letrozole alone: {fmt(alone)}")
    print(f"  with T:          {fmt(with_t)}")
    print("  fold: " + ", ".join(f"{q} x{with_t[q] / alone[q]:.2f}" for q in QUANTITIES))


if __name__ == "__main__":
    main()
