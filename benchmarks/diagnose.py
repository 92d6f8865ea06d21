"""Where the CPU engine's time goes: one year of each regimen alone, at two tolerances.

Usage: python benchmarks/diagnose.py
Each row: seconds per patient-year (median of 3, warm) and the number of integration segments
(dose and output times merged). Each dose restarts CVODE, which then re-resolves the absorption
transient from a small first step; the untreated row shows the cost of the segment loop alone.
"""

from __future__ import annotations

import statistics
import time

from hpgsim.engine.schedule import build_schedule, output_grid, segment_grid
from hpgsim.engine.steady import steady_state
from hpgsim.population.phenotypes import typical_patient
from hpgsim.protocol.schema import validate_protocol
from hpgsim.simulation import model_for, solve_states

CASES = {
    "untreated (daily output only)": [],
    "anastrozole 1 mg daily": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 day"}],
    "TE 200 mg weekly": [{"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week"}],
    "hCG 500 IU every 2 days": [{"drug": "hcg", "dose": "500 IU", "every": "2 day"}],
    "gonadorelin 100 ug twice weekly": [{"drug": "gonadorelin", "dose": "100 ug", "every": "3.5 day"}],
    "reference (TE + anastrozole + hCG)": [
        {"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week"},
        {"drug": "anastrozole", "dose": "1 mg", "every": "1 day"},
        {"drug": "hcg", "dose": "500 IU", "every": "2 day"},
    ],
}


def main() -> None:
    year = 52 * 7 / 365.25
    print("| regimen (1 year, daily output) | segments | s/patient-year rtol 1e-6 | rtol 1e-7 | rtol 1e-8 |")
    print("|---|---|---|---|---|")
    for name, regs in CASES.items():
        prot = validate_protocol({"duration": "52 week", "regimens": regs})
        spec = model_for(prot)
        p = typical_patient("healthy").vector(spec)
        y0 = steady_state(spec, p)
        sch = build_schedule(spec, prot)
        grid = output_grid(prot.duration_h)
        n_seg = segment_grid(sch, grid)[0].size - 1
        cells = []
        for rtol in (1e-6, 1e-7, 1e-8):
            solve_states(spec, p, y0, sch, grid, rtol=rtol)
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                solve_states(spec, p, y0, sch, grid, rtol=rtol)
                ts.append(time.perf_counter() - t0)
            cells.append(f"{statistics.median(ts) / year:.3f}")
        print(f"| {name} | {n_seg} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
