"""Validation cohorts at two solver tolerances: time and how far the statistics move.

Usage:
    python benchmarks/validation_rtol.py [--n 12] [--rtol 1e-4 1e-3]

Runs every packaged study (`hpgsim.validation.run.run_study`, 2 worker processes, seed 0) once per
tolerance in one process, prints the wall time per tolerance (and Pitteloud2002's, the bolus-heavy
arm), then the observations whose simulated statistic moves most between the first and the last
tolerance, and the median relative change. docs/validation.md quotes its output (n = 12: 49 s vs 40 s,
median change 9e-6, at most 2%), which is why validation runs at rtol 1e-3.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hpgsim.validation import run as vr
from hpgsim.validation.studies import load_studies, packaged_study_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="virtual men per arm")
    ap.add_argument("--rtol", type=float, nargs="+", default=[1e-4, 1e-3])
    args = ap.parse_args()
    studies = load_studies([packaged_study_dir()])
    out: dict[float, list[dict]] = {}
    default = vr.VALIDATION_RTOL
    try:
        for rtol in args.rtol:
            vr.VALIDATION_RTOL = rtol
            t0 = time.perf_counter()
            rows: list[dict] = []
            for s in studies:
                t1 = time.perf_counter()
                rows += vr.run_study(s, n=args.n, seed=0, processes=2)
                if s.id == "Pitteloud2002":
                    print(f"rtol {rtol:g}: Pitteloud2002 {time.perf_counter() - t1:.1f} s", flush=True)
            out[rtol] = rows
            print(f"rtol {rtol:g}: all studies {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        vr.VALIDATION_RTOL = default
    first, last = out[args.rtol[0]], out[args.rtol[-1]]
    moves = []
    for a, b in zip(first, last, strict=True):
        if a["simulated"] is None or b["simulated"] is None:
            continue
        rel = abs(a["simulated"] - b["simulated"]) / max(abs(a["simulated"]), 1e-9)
        moves.append((rel, a["study"], a["quantity"], a["stat"], a["simulated"], b["simulated"]))
    moves.sort(reverse=True)
    print("largest relative changes (study, quantity, statistic, first, last):")
    for rel, *rest in moves[:8]:
        print(f"  {rel:.2e}  {rest}")
    print(f"median relative change {np.median([m[0] for m in moves]):.2e} over {len(moves)} observations")


if __name__ == "__main__":
    main()
