"""Fold changes of the typical healthy man after 12 weeks of a SERM or an aromatase inhibitor.

    python tools/drug_response.py                      # the packaged (calibrated) model
    python tools/drug_response.py enclomiphene_ki=0.8  # one-off parameter overrides (model units)
    python tools/drug_response.py phenotype=subfertile_low_te  # the typical man of another phenotype

Overrides that move the untreated baseline re-solve the calibration's baseline anchors first, as
`hpgsim calibrate` does. Quoted in docs/calibration.md and the enclomiphene drug file.
"""

from __future__ import annotations

import sys
import warnings

from hpgsim.population.phenotypes import Patient, typical_patient
from hpgsim.simulation import simulate
from hpgsim.validation.calibrate import load_anchors, solve_anchors

REGIMENS = [("clomiphene_citrate", "25 mg"), ("tamoxifen", "10 mg"), ("anastrozole", "1 mg")]
QUANTITIES = ["total_testosterone", "free_testosterone", "lh", "fsh", "estradiol", "shbg"]


def main(argv: list[str]) -> None:
    warnings.filterwarnings("ignore")
    pairs = dict(a.split("=", 1) for a in argv)
    phenotype = pairs.pop("phenotype", "healthy")
    over = {k: float(v) for k, v in pairs.items()}
    man = typical_patient(phenotype)
    params = {**man.parameters, **over}
    if over:
        params.update(solve_anchors(over, {k: man.parameters[k] for k in over}, load_anchors()))
    patient = Patient(f"typical {phenotype}", params, phenotype)
    print("fold change at day 84, daily dosing: " + ", ".join(QUANTITIES))
    for drug, dose in REGIMENS:
        protocol = {"duration": "84 day", "regimens": [{"drug": drug, "dose": dose, "every": "1 day"}]}
        d = simulate(protocol, patient=patient, output_step_h=24).observables
        folds = ", ".join(f"{q} {d[q].loc[84.0] / d[q].iloc[0]:.3f}" for q in QUANTITIES)
        print(f"  {drug} {dose}: {folds}")


if __name__ == "__main__":
    main(sys.argv[1:])
