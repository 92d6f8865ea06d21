"""The JAX engine on the CPU, honestly: one man and a vmap-ed batch, vs the CPU engine, same run.

Usage:
    python benchmarks/jax_cpu.py [--batch 64] [--protocol reference|stiff]

Times (1 year, healthy men, rtol 1e-6): the JAX engine's first call (tracing + XLA compile + run), a
warm single man, a warm batch of `--batch` men in one vmap-ed call (``simulate_population(engine=
"jax")``, steady states included as for the CPU engine), and the CPU engine on the same men. Also the
largest relative difference between the two engines on the batch (canonical quantities).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from vs_roadrunner import PROTOCOLS, YEAR


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--protocol", default="reference", choices=sorted(PROTOCOLS))
    args = ap.parse_args()
    from hpgsim.engine.jax_engine import enable_float64

    enable_float64()
    from hpgsim.population.phenotypes import sample_patients
    from hpgsim.simulation import simulate, simulate_population

    raw = PROTOCOLS[args.protocol]
    men = sample_patients("healthy", args.batch, seed=0)
    t0 = time.perf_counter()
    simulate(raw, men[0], engine="jax")
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    simulate(raw, men[0], engine="jax")
    single = time.perf_counter() - t0
    simulate_population(raw, men, engine="jax")  # compiles the batched function
    t0 = time.perf_counter()
    jx = simulate_population(raw, men, engine="jax")
    batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    cpu = simulate_population(raw, men, processes=1)
    t_cpu = time.perf_counter() - t0
    worst = 0.0
    for a, b in zip(jx, cpu, strict=True):
        cols = [c for c in b.observables.columns if not c.endswith("_concentration")]
        x, r = a.observables[cols].to_numpy(), b.observables[cols].to_numpy()
        floor = np.maximum(1e-3 * np.abs(r).max(axis=0), 1e-300)
        worst = max(worst, float(np.max(np.abs(x - r) / np.maximum(np.abs(r), floor))))
    n = args.batch
    print(f"1 year of {args.protocol}, rtol 1e-6, healthy men; JAX vs CPU engine max rel. difference {worst:.1e}")
    print("| engine | measurement | patient-years/s | s/patient-year |")
    print("|---|---|---|---|")
    for label, what, t, k in (
        ("JAX (CPU)", "first call (trace + compile + run), 1 man", first, 1),
        ("JAX (CPU)", "warm, 1 man", single, 1),
        ("JAX (CPU)", f"warm, vmap-ed batch of {n}", batch, n),
        ("CPU engine", f"same {n} men, 1 process", t_cpu, n),
    ):
        print(f"| {label} | {what} | {k * YEAR / t:.3f} | {t / (k * YEAR):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
