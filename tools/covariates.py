"""Age and BMI effects of the typical healthy man against the population studies (docs/model.md, Covariates).

    python tools/covariates.py

Untreated steady states; one covariate moved at a time. Published: MMAS (Feldman 2002) cross-sectional
free T -2%/year, SHBG +1.6%/year, total T -0.8%/year, gonadotropins rising; EMAS (Wu 2008) BMI >= 30 vs
< 25: total T -5.09 nmol/L, free T -53.7 pmol/L, LH unchanged or lower.
"""

from __future__ import annotations

import warnings

import pandas as pd

from hpgsim.population.phenotypes import Patient, typical_patient
from hpgsim.simulation import simulate


def steady(age: float, bmi: float) -> pd.Series:
    man = typical_patient("healthy")
    patient = Patient("covariate", {**man.parameters, "age": age, "bmi": bmi}, "healthy")
    return simulate({"duration": "1 day", "regimens": []}, patient=patient, output_step_h=24).observables.iloc[0]


def main() -> None:
    warnings.filterwarnings("ignore")
    young = steady(35.0, 25.0)
    print("age (BMI 25), change from age 35:")
    for age in (50.0, 60.0, 75.0):
        d = steady(age, 25.0)
        print(
            f"  {age:.0f} y: total T {100 * (d.total_testosterone / young.total_testosterone - 1):+.0f}%, "
            f"free T {100 * (d.free_testosterone / young.free_testosterone - 1):+.0f}%, "
            f"SHBG {100 * (d.shbg / young.shbg - 1):+.0f}%, LH {100 * (d.lh / young.lh - 1):+.0f}%, "
            f"E2 {100 * (d.estradiol / young.estradiol - 1):+.0f}%"
        )
    lean = steady(60.0, 22.0)
    print("BMI (age 60), change from BMI 22:")
    for bmi in (27.5, 32.5, 41.0):
        d = steady(60.0, bmi)
        print(
            f"  {bmi:.1f} kg/m2: total T {(d.total_testosterone - lean.total_testosterone) / 28.84:+.2f} nmol/L, "
            f"free T {(d.free_testosterone - lean.free_testosterone) * 3.467:+.0f} pmol/L, "
            f"SHBG {d.shbg:.1f} nmol/L, LH {d.lh:.2f} IU/L (lean {lean.lh:.2f})"
        )


if __name__ == "__main__":
    main()
