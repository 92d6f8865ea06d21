"""Cross-checks of the exported SBML against a second, independent simulator (COPASI via basico).

Run ``python -m hpgsim.interop.check`` for the table in docs/interop.md.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from hpgsim.engine.schedule import build_schedule
from hpgsim.engine.steady import steady_state
from hpgsim.interop.sbml import check_sbml, export_sbml
from hpgsim.population.phenotypes import Patient, typical_patient
from hpgsim.simulation import as_protocol, model_for, observe_states, solve_states

# The protocols of docs/interop.md (issue 5): short enough for the fast tests.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "anastrozole 1 mg daily, 5 weeks": {
        "duration": "5 week",
        "regimens": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 day"}],
    },
    "TE 200 mg weekly + hCG 500 IU every other day, 5 weeks": {
        "duration": "5 week",
        "regimens": [
            {"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week"},
            {"drug": "hcg", "dose": "500 IU", "every": "2 day"},
        ],
    },
    "gonadorelin 100 ug SC twice weekly, 4 weeks": {
        "duration": "4 week",
        "regimens": [{"drug": "gonadorelin", "dose": "100 ug", "every": "3.5 day"}],
    },
}


def compare_with_copasi(protocol: Any, patient: Patient, step_h: float = 2.0, rtol: float = 1e-10) -> dict[str, float]:
    """Max relative difference per output quantity between COPASI on the exported file and hpgsim's CPU engine.

    Outputs are every `step_h` hours from 1 h after day 0 (never at a dose time, where hpgsim records
    the pre-dose value and simulators differ in which side of an event they report). The relative
    difference uses max(|hpgsim value|, 1e-6 x the quantity's largest value) as its scale, so that drug
    concentrations that decay to ~0 between doses are compared on their own scale.

    Args:
        protocol: a protocol (Protocol, path or mapping).
        patient: the man.
        step_h: output spacing in hours.
        rtol: relative tolerance of both solvers (COPASI's absolute tolerance is rtol x 1e-2).

    Returns:
        {quantity: max relative difference}.
    """
    import basico

    prot = as_protocol(protocol)
    text = export_sbml(prot, patient=patient)
    spec = model_for(prot)
    params = patient.vector(spec)
    y0 = steady_state(spec, params, patient=patient.name)
    times = np.arange(1.0, prot.duration_h, step_h)
    schedule = build_schedule(spec, prot)
    states = solve_states(spec, params, y0, schedule, np.concatenate([[0.0], times]), rtol=rtol, patient=patient.name)[1:]
    ref = observe_states(spec, params, states, times)
    dm = basico.load_model_from_string(text)
    try:
        df = basico.run_time_course(
            model=dm,
            values=list(times),
            duration=float(times[-1]),
            r_tol=rtol,
            a_tol=rtol * 1e-2,
            max_steps=1_000_000,
            use_sbml_id=True,
        )
    finally:
        basico.remove_datamodel(dm)
    if not np.allclose(df.index.to_numpy(), times):
        raise RuntimeError("COPASI returned other output times than asked for")
    missing = [c for c in ref.columns if c not in df.columns]
    if missing:
        raise RuntimeError(f"COPASI's output lacks {missing}")
    got = df[list(ref.columns)].to_numpy()
    exp = ref.to_numpy()
    scale = np.maximum(np.abs(exp), 1e-6 * np.abs(exp).max(axis=0))
    rel = np.abs(got - exp) / scale
    return dict(zip(ref.columns, (float(x) for x in rel.max(axis=0)), strict=True))


def main(argv: list[str] | None = None) -> int:
    """Print, per protocol, libsbml's findings and the largest COPASI-vs-hpgsim relative difference."""
    args = sys.argv[1:] if argv is None else argv
    phenotype = args[0] if args else "healthy"
    man = typical_patient(phenotype)
    print(f"typical {phenotype} man; COPASI (LSODA, basico) vs hpgsim CPU engine (CVODE), rtol 1e-10")
    print(f"untreated full model: libsbml findings (units on) = {len(check_sbml(export_sbml(None, patient=man)))}")
    for name, prot in PROTOCOLS.items():
        t0 = time.perf_counter()
        findings = check_sbml(export_sbml(prot, patient=man))
        diffs = compare_with_copasi(prot, man)
        worst = max(diffs, key=lambda k: diffs[k])
        print(
            f"{name}: libsbml findings {len(findings)}; max rel diff {diffs[worst]:.2e} ({worst}); "
            f"canonical-only max {max(v for k, v in diffs.items() if not k.endswith('_concentration')):.2e}; "
            f"{time.perf_counter() - t0:.1f} s"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
