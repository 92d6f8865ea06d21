"""How the provisional feedback parameters were set (issue 2), reproducibly.

A least-squares search over 11 parameters of the typical healthy man against the behaviour targets
below (log-ratio residuals; anastrozole, clomiphene and TE arms run 56 days). It is not the
calibration (issue 3 fits the study files with documented weights and priors); it documents where
the "provisional" values in src/hpgsim/data came from. Run: .venv/bin/python tools/tune_provisional.py
(about 10 minutes on 2 cores); it prints the fitted values and the behaviours they give.

Targets: baseline T 520 ng/dL, LH 4.5 and FSH 4.5 IU/L, E2 25 pg/mL (physiology.yaml reference values);
anastrozole 1 mg/day: T x1.6, E2 x0.65, LH x1.5, FSH x1.3 (Leder 2004); clomiphene 25 mg/day: T x2,
LH x1.7, FSH x1.5, E2 x1.6 (issue 2 ranges); TE 200 mg/week: LH and FSH x0.05 at the weekly troughs
(Coviello 2005); TE 50 mg/week: LH and FSH x0.5, T x1.1 (Matsumoto 1990 ED50).
"""

import json

import numpy as np
from scipy.optimize import least_squares

from hpgsim.errors import HpgsimError
from hpgsim.population.phenotypes import Patient, typical_patient
from hpgsim.simulation import simulate

names = [
    "lh_synthesis_max",
    "fsh_synthesis_max",
    "t_production_max",
    "e2_hyp_k",
    "e2_pit_k",
    "ft_hyp_k",
    "ft_fsh_k",
    "enclomiphene_ki",
    "anastrozole_imax",
    "ft_hyp_n",
    "ft_fsh_n",
]
x0 = np.log([31, 10.9, 6762, 55, 189, 0.68, 1.2, 0.48, 0.63, 4, 4])
lo = np.log([3, 0.5, 2000, 30, 30, 0.15, 0.2, 0.1, 0.4, 1.5, 1.5])
hi = np.log([400, 200, 30000, 300, 300, 3, 5, 3, 0.95, 6, 6])
fixed = {"lh_trophic_n": 1.0, "e2_hyp_n": 3.0, "e2_pit_n": 3.0, "lh_leydig_k": 6.5, "lh_trophic_k": 6.5}
T = dict(
    base=dict(total_testosterone=520, lh=4.5, fsh=4.5, estradiol=25),
    AI=dict(total_testosterone=1.6, estradiol=0.65, lh=1.5, fsh=1.3),
    CC=dict(total_testosterone=2.0, lh=1.7, fsh=1.5, estradiol=1.6),
    TE=dict(lh=0.05, fsh=0.05),
    TE50=dict(lh=0.5, fsh=0.5, total_testosterone=1.1),
)
W = dict(base=1.0, AI=2.0, CC=1.5, TE=1.0, TE50=1.0)
REG = dict(
    AI={"drug": "anastrozole", "dose": "1 mg", "every": "1 day"},
    CC={"drug": "clomiphene_citrate", "dose": "25 mg", "every": "1 day"},
    TE={"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week"},
    TE50={"drug": "testosterone_enanthate", "dose": "50 mg", "every": "1 week"},
)


def resid(x, verbose=False):
    p = dict(typical_patient("healthy").parameters)
    p.update(fixed)
    p.update(dict(zip(names, np.exp(x), strict=True)))
    H = Patient("h", p, "healthy")
    r = []
    out = {}
    try:
        b = simulate({"duration": "1 day"}, patient=H).observables.loc[0]
        for k, v in T["base"].items():
            r.append(W["base"] * np.log(b[k] / v))
        out["base"] = {k: b[k] for k in T["base"]}
        for lab, reg in REG.items():
            df = simulate({"duration": "56 day", "regimens": [reg]}, patient=H, output_step_h=6).observables
            late = df.loc[[35, 42, 49, 56]].max() if lab == "TE" else (df.loc[35:56].mean() if lab == "TE50" else df.loc[56])
            out[lab] = {}
            for k, v in T[lab].items():
                ratio = late[k] / df[k].loc[0]
                out[lab][k] = ratio
                r.append(W[lab] * np.log(ratio / v))
    except HpgsimError:
        return np.full(17, 10.0)
    if verbose:
        print(json.dumps(out, default=float))
    return np.array(r)


res = least_squares(resid, x0, bounds=(lo, hi), diff_step=0.05, max_nfev=200, verbose=1)
print(json.dumps({**fixed, **{k: float(f"{v:.4g}") for k, v in zip(names, np.exp(res.x), strict=True)}}))
resid(res.x, verbose=True)
print("cost", res.cost)
