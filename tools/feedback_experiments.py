"""Human feedback experiments of physiology.yaml (feedback_experiments) replayed on typical men.

    python tools/feedback_experiments.py

1. Stepped E2-patch add-back under letrozole 2.5 mg/day (estradiol_clamp_under_letrozole; 10 young men):
   T 955 ng/dL at E2 12.6 pg/mL with no patch, 179 at 68.6 pg/mL with 100 ug/day.
2. T add-back with aromatase blocked (testosterone_infusion_with_aromatase_blocked): T 15 mg/day for 4 days
   under testolactone, E2 unchanged; LH 14.5 -> 8.0, FSH 9.9 -> 5.8 IU/L.
3. GnRH-deficient men on fixed exogenous GnRH (testosterone_and_estradiol_add_back_after_ketoconazole,
   Pitteloud 2008): an E2 patch of 37.5 ug/day lowered LH pulse amplitude 14.7 -> 12 IU/L (x0.82); T's
   pituitary action needs aromatization (no number in the abstract).
4. Measured beside them (docs/model.md): letrozole 2.5 mg/day for 28 days in the typical healthy man
   (TSjoen2005: T x1.99-2.46, LH x4.2-4.4, E2 x0.38-0.54); TE 200 mg/week for 26 weeks, LH and FSH at the
   weekly troughs from week 3 (Coviello2005 at week 3: x0.05, x0.03) and inhibin B (75% of baseline after
   gonadotropin suppression by T plus a progestin, Matthiesson 2003); a man whose Leydig steroidogenesis is
   blocked to 2% from day 0 (ketoconazole, physiology.yaml ketoconazole_castration_inhibin_b: at 150 h T 38
   ng/dL, E2 x0.38, LH x2.6, FSH x2.0, inhibin B x0.74; Pitteloud 2008: LH x3 by days 3-4); the LH response
   to a GnRH bolus on letrozole (TSjoen2005); and a man without Leydig function (LH and FSH with no gonadal
   feedback).
Values at day 28 (1), day 14 (2) and day 70 (3), read at the morning dose time. The patch is given as an
eighth of its daily dose every 3 h (the near-constant input of a worn patch). Quoted in docs/model.md.
"""

from __future__ import annotations

import warnings

from hpgsim.population.phenotypes import Patient, typical_patient
from hpgsim.simulation import simulate

LETROZOLE = [{"drug": "letrozole", "dose": "2.5 mg", "every": "1 day"}]
PUMP = [{"drug": "gonadorelin", "dose": "5 ug", "every": "90 min", "route": "sc"}]
QUANTITIES = ["estradiol", "total_testosterone", "lh", "fsh"]


def patch(ug_per_day: float, start: str = "0 day") -> dict:
    return {"drug": "estradiol_patch", "dose": f"{ug_per_day / 8} ug", "every": "3 h", "start": start}


def day(regimens: list[dict], duration: str, at: float, phenotype: str = "healthy") -> dict[str, float]:
    obs = simulate({"duration": duration, "regimens": regimens}, phenotype=phenotype, output_step_h=24).observables
    return {q: float(obs[q].loc[at]) for q in QUANTITIES}


def fmt(v: dict[str, float]) -> str:
    return f"E2 {v['estradiol']:5.1f} pg/mL, T {v['total_testosterone']:5.0f} ng/dL, LH {v['lh']:5.2f}, FSH {v['fsh']:5.2f} IU/L"


def folds(a: dict[str, float], b: dict[str, float]) -> str:
    return ", ".join(f"{q} x{b[q] / a[q]:.2f}" for q in QUANTITIES)


def blocked_from_day_0(man: Patient, leydig_factor: float, days: float) -> dict[str, list[float]]:
    """The man at his steady state, then Leydig capacity x `leydig_factor` from day 0 (a steroidogenesis block)."""
    blocked = Patient("blocked", {**man.parameters, "leydig_capacity": man.parameters["leydig_capacity"] * leydig_factor})
    obs = simulate({"duration": f"{days} day"}, patient=blocked, start_from=man, output_step_h=6.0).observables
    return {q: [float(obs[q].iloc[0]), float(obs[q].loc[3.5]), float(obs[q].loc[6.25])] for q in [*QUANTITIES, "inhibin_b"]}


def gnrh_peak(regimens: list[dict], at_day: float) -> float:
    """Peak LH within 5 h of a 2.5 ug IV gonadorelin bolus given on `at_day`."""
    bolus = {"drug": "gonadorelin", "dose": "2.5 ug", "at": [f"{at_day} day"], "route": "iv"}
    prot = {"duration": f"{at_day + 0.25} day", "regimens": [*regimens, bolus]}
    return float(simulate(prot, output_step_h=1 / 12).observables.lh.loc[at_day : at_day + 0.2].max())


def main() -> None:
    warnings.filterwarnings("ignore")
    print("1. E2 patch under letrozole 2.5 mg/day, day 28 (published: no patch E2 12.6, T 955; 100 ug/day E2 68.6, T 179)")
    t = {}
    for ug in (0, 25, 50, 100):
        v = day(LETROZOLE + ([patch(ug)] if ug else []), "28 day", 28.0)
        t[ug] = v["total_testosterone"]
        print(f"  {ug:3d} ug/day: {fmt(v)}")
    print(f"  T with no patch / T with 100 ug/day: {t[0] / t[100]:.1f} (published 5.3)")
    print("2. T gel 112 mg/day (15 mg absorbed) on days 10-14 of letrozole, day 14 (published LH x0.55, FSH x0.59)")
    alone = day(LETROZOLE, "14 day", 14.0)
    with_t = day(
        [*LETROZOLE, {"drug": "testosterone_gel", "dose": "112 mg", "every": "1 day", "start": "10 day"}], "14 day", 14.0
    )
    print(f"  letrozole alone: {fmt(alone)}")
    print(f"  with T:          {fmt(with_t)}")
    print(f"  fold: {folds(alone, with_t)}")
    print("3. GnRH-deficient man on a GnRH pump (5 ug SC every 90 min), additions on days 63-70 (letrozole from day 56)")
    hh = "hypogonadotropic_hypogonadism"
    gel = {"drug": "testosterone_gel", "dose": "100 mg", "every": "1 day", "start": "63 day"}
    let = [{**LETROZOLE[0], "start": "56 day"}]
    pump = day(PUMP, "70 day", 70.0, hh)
    print(f"  pump alone:        {fmt(pump)}")
    e2 = day([*PUMP, patch(37.5, "63 day")], "70 day", 70.0, hh)
    print(f"  + E2 patch 37.5 ug/day: {folds(pump, e2)} (published LH amplitude x0.82)")
    print(f"  + T gel 100 mg/day:     {folds(pump, day([*PUMP, gel], '70 day', 70.0, hh))}")
    pump_let = day(PUMP + let, "70 day", 70.0, hh)
    print(f"  + T gel under letrozole (vs letrozole alone): {folds(pump_let, day([*PUMP, *let, gel], '70 day', 70.0, hh))}")

    print("4. Measured beside them")
    obs = simulate({"duration": "28 day", "regimens": LETROZOLE}, phenotype="healthy").observables
    print(f"  letrozole 2.5 mg/day, day 28: {folds(dict(obs[QUANTITIES].iloc[0]), dict(obs[QUANTITIES].loc[28.0]))}")
    te = {"duration": "26 week", "regimens": [{"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week"}]}
    obs = simulate(te, phenotype="healthy").observables
    troughs = obs.loc[21.0:182.0:7]  # the morning of each weekly dose, read before it
    lh, fsh = (troughs[q] / obs[q].iloc[0] for q in ("lh", "fsh"))
    inhb = obs.inhibin_b
    print(
        f"  TE 200 mg/week, troughs from week 3: LH x{lh.min():.2f}-{lh.max():.2f}, FSH x{fsh.min():.2f}-{fsh.max():.2f}; "
        f"inhibin B {inhb.iloc[0]:.0f} -> {inhb.loc[35.0]:.1f} pg/mL at week 5, {inhb.loc[182.0]:.1f} at week 26"
    )
    k = blocked_from_day_0(typical_patient("healthy"), 0.02, 7.0)
    print(
        f"  Leydig steroidogenesis blocked to 2% (ketoconazole-like): T {k['total_testosterone'][0]:.0f} -> "
        f"{k['total_testosterone'][2]:.0f} ng/dL, E2 x{k['estradiol'][2] / k['estradiol'][0]:.2f} at 6.25 days; "
        f"LH x{k['lh'][1] / k['lh'][0]:.1f} at 3.5 days, x{k['lh'][2] / k['lh'][0]:.1f} at 6.25; "
        f"FSH x{k['fsh'][2] / k['fsh'][0]:.1f}, inhibin B x{k['inhibin_b'][2] / k['inhibin_b'][0]:.2f} at 6.25 days"
    )
    ratio = gnrh_peak(LETROZOLE, 28.0) / gnrh_peak([], 1.0)
    print(f"  peak LH after 2.5 ug GnRH IV, day 28 of letrozole vs none: x{ratio:.2f} (TSjoen2005: +152% young, +52% elderly)")
    man = typical_patient("healthy")
    castrate = Patient("castrate", {**man.parameters, "leydig_capacity": 0.0})
    c = simulate({"duration": "1 day"}, patient=castrate).observables.iloc[0]
    b = simulate({"duration": "1 day"}, patient=man).observables.iloc[0]
    print(f"  no Leydig function: LH {c.lh:.0f} IU/L (x{c.lh / b.lh:.0f}), FSH {c.fsh:.0f} IU/L (x{c.fsh / b.fsh:.0f})")


if __name__ == "__main__":
    main()
