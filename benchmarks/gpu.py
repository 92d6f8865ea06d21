"""JAX engine on one GPU: batched virtual men, 1 year of the reference protocol.

Usage (on a machine with JAX + CUDA; hpgsim need not be installed):
    PYTHONPATH=src python benchmarks/gpu.py --sizes 10000,100000

Prints a table of patient-years per second (steady state and treatment run timed separately, compile
excluded and reported) and checks three men against CPU-engine (RoadRunner) trajectories stored in
benchmarks/gpu_reference.npz (made on a CPU machine with `--make-reference`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REFERENCE = {
    "duration": "52 week",
    "regimens": [
        {"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week"},
        {"drug": "anastrozole", "dose": "1 mg", "every": "1 day"},
        {"drug": "hcg", "dose": "500 IU", "every": "2 day"},
    ],
}
CHECK = ["total_testosterone", "estradiol", "lh", "fsh", "intratesticular_testosterone", "sperm_concentration"]


def _setup(n: int, seed: int):
    from hpgsim.engine.schedule import build_schedule, output_grid
    from hpgsim.population.phenotypes import get_phenotype
    from hpgsim.protocol.schema import validate_protocol
    from hpgsim.simulation import model_for

    prot = validate_protocol(REFERENCE)
    spec = model_for(prot)
    ph = get_phenotype("healthy")
    typical = np.array([ph.typical[k] for k in spec.parameter_names])
    cv = np.array([ph.cv.get(k, 0.0) for k in spec.parameter_names])
    rng = np.random.default_rng(seed)
    sig = np.sqrt(np.log1p(cv**2))
    P = typical * np.exp(sig * rng.standard_normal((n, typical.size)))
    return prot, spec, P, build_schedule(spec, prot), output_grid(prot.duration_h)


def make_reference() -> None:
    from hpgsim.engine.steady import steady_state
    from hpgsim.simulation import observe_states, solve_states

    _prot, spec, P, sch, grid = _setup(3, seed=0)
    obs = []
    for p in P:
        y0 = steady_state(spec, p)
        ys = solve_states(spec, p, y0, sch, grid, rtol=1e-9)
        obs.append(observe_states(spec, p, ys, grid)[CHECK].to_numpy())
    np.savez(HERE / "gpu_reference.npz", params=P, obs=np.stack(obs))
    print("wrote", HERE / "gpu_reference.npz")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--make-reference", action="store_true")
    ap.add_argument("--skip-check", action="store_true", help="skip the 3-man agreement check")
    args = ap.parse_args()
    if args.make_reference:
        make_reference()
        return 0
    import jax

    jax.config.update("jax_enable_x64", True)
    from hpgsim.engine.jax_engine import JaxEngine
    from hpgsim.simulation import observe_states, tolerances

    print("devices:", jax.devices(), "jax", jax.__version__, flush=True)
    year = 52 * 7 / 365.25
    _prot, spec, _, sch, grid = _setup(1, 0)
    if not args.skip_check:  # agreement with the CPU engine on three men
        ref = np.load(HERE / "gpu_reference.npz")
        eng = JaxEngine(spec, rtol=1e-9)
        P3 = ref["params"]
        t0 = time.perf_counter()
        Y3 = eng.steady_state_batch(P3)
        eng.atol = tolerances(spec, Y3[0], sch, 1e-9)
        ys = eng.solve_batch(P3, Y3, sch, grid)
        got = np.stack([observe_states(spec, P3[i], ys[i], grid)[CHECK].to_numpy() for i in range(3)])
        rel = np.max(np.abs(got - ref["obs"]) / np.abs(ref["obs"]))
        print(
            f"agreement with the CPU engine (3 men, rtol 1e-9): max rel. difference {rel:.2e} ({time.perf_counter() - t0:.0f} s)"
        )
    eng = JaxEngine(spec, rtol=args.rtol)
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        _, _, P, _, _ = _setup(n, seed=1)
        t0 = time.perf_counter()
        Y = eng.steady_state_batch(P)
        t_ss_first = time.perf_counter() - t0
        print(f"n={n}: steady state, compile + run {t_ss_first:.1f} s", flush=True)
        eng.atol = tolerances(spec, Y[0], sch, args.rtol)
        t0 = time.perf_counter()
        eng.solve_batch(P, Y, sch, grid)
        t_first = time.perf_counter() - t0
        print(f"n={n}: 1 year, compile + run {t_first:.1f} s", flush=True)
        t0 = time.perf_counter()
        eng.solve_batch(P, Y, sch, grid)
        t_run = time.perf_counter() - t0
        rows.append((n, t_ss_first, t_first, t_run, n * year / t_run))
        print(rows[-1], flush=True)
    print("\n| men | steady state, compile + run (s) | 1 year, compile + run (s) | 1 year, warm (s) | patient-years/s (warm) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
