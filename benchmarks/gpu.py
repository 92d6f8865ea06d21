"""JAX engine on one GPU: 10,000 to 1,000,000 virtual men, 1 year of the reference protocol, in chunks.

Usage (on a machine with JAX + CUDA; hpgsim need not be installed, libRoadRunner is not needed):
    PYTHONPATH=src python benchmarks/gpu.py                         # 10k, 100k, 1M men, <= 280 s
    PYTHONPATH=src python benchmarks/gpu.py --sizes 10000 --chunk 10000 --budget 120
    python benchmarks/gpu.py --make-reference                       # on a CPU machine, after a model change

Men are solved in chunks of ``--chunk`` (one ``vmap``-ed batch each, the same shape every time, so the
steady-state and the treatment functions compile once). Per chunk: the untreated steady state
(batched, in JAX), then the year of treatment; the states stay on the device only for that chunk.
The first chunk is a warm-up that compiles both functions (its time is printed, not counted); every
size's run is then timed warm. A wall-clock budget (``--budget``, default 280 s) keeps the whole script
under 5 minutes: a size whose next chunk would overrun it stops early and its row says how many men it
reached (the rate is still measured on those). The agreement check: three men whose CPU-engine
trajectories (rtol 1e-9) are stored in benchmarks/gpu_reference.npz ride in the warm-up chunk; their
canonical quantities are compared (goal: max relative difference <= 1e-4).
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
YEAR = 52 * 7 / 365.25


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
    np.savez(HERE / "gpu_reference.npz", params=P, obs=np.stack(obs), digest=np.array(spec.digest()))
    print("wrote", HERE / "gpu_reference.npz", "for model", spec.digest())


def _load_reference(spec) -> tuple[np.ndarray, np.ndarray] | None:
    path = HERE / "gpu_reference.npz"
    if not path.is_file():
        return None
    ref = np.load(path)
    digest = str(ref["digest"]) if "digest" in ref.files else None
    if digest != spec.digest() or ref["params"].shape[1] != len(spec.parameter_names):
        print(
            f"agreement check skipped: {path.name} was made for model {digest}, this is {spec.digest()}; "
            "rerun `python benchmarks/gpu.py --make-reference` on a CPU machine",
            flush=True,
        )
        return None
    return ref["params"], ref["obs"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--chunk", type=int, default=50000, help="men per vmap-ed batch (capped at the smallest size)")
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--budget", type=float, default=280.0, help="wall-clock seconds for the whole script")
    ap.add_argument("--make-reference", action="store_true")
    args = ap.parse_args()
    start = time.perf_counter()
    if args.make_reference:
        make_reference()
        return 0
    import jax

    jax.config.update("jax_enable_x64", True)
    from hpgsim.engine.jax_engine import JaxEngine, enable_compilation_cache
    from hpgsim.simulation import observe_states, tolerances

    enable_compilation_cache()
    print("devices:", jax.devices(), "jax", jax.__version__, flush=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    chunk = min(args.chunk, min(sizes))
    _prot, spec, P0, sch, grid = _setup(chunk, seed=1)
    ref = _load_reference(spec)
    if ref is not None:
        P0[: ref[0].shape[0]] = ref[0]  # the check men ride in the warm-up chunk
    eng = JaxEngine(spec, rtol=args.rtol)

    # warm-up chunk: compiles the steady state and the treatment year (same shapes from here on)
    t0 = time.perf_counter()
    Y0 = eng.steady_state_batch(P0)
    t_ss_compile = time.perf_counter() - t0
    eng.atol = tolerances(spec, np.median(Y0, axis=0), sch, args.rtol)
    t0 = time.perf_counter()
    ys = eng.solve_batch(P0, Y0, sch, grid)
    t_run_compile = time.perf_counter() - t0
    print(
        f"warm-up chunk of {chunk}: steady state {t_ss_compile:.1f} s, 1 year {t_run_compile:.1f} s (both incl. compile)",
        flush=True,
    )
    if ref is not None:
        k = ref[0].shape[0]
        got = np.stack([observe_states(spec, P0[i], ys[i], grid)[CHECK].to_numpy() for i in range(k)])
        rel = float(np.max(np.abs(got - ref[1]) / np.maximum(np.abs(ref[1]), 1e-3 * np.abs(ref[1]).max(axis=1, keepdims=True))))
        print(f"agreement with the CPU engine ({k} men, rtol 1e-9 reference): max rel. difference {rel:.2e}", flush=True)
    del ys

    rows = []
    for n in sizes:
        n_chunks = -(-n // chunk)
        t_ss = t_run = 0.0
        done = 0
        for c in range(n_chunks):
            spent = time.perf_counter() - start
            per_chunk = (t_ss + t_run) / c if c else t_ss_compile + t_run_compile
            if c and spent + per_chunk > args.budget:
                break
            _, _, P, _, _ = _setup(chunk, seed=100 + c)
            t0 = time.perf_counter()
            Y = eng.steady_state_batch(P)
            t1 = time.perf_counter()
            ys = eng.solve_batch(P, Y, sch, grid)
            ys.sum()  # the result is on the host: the device work is finished
            t2 = time.perf_counter()
            del ys
            t_ss += t1 - t0
            t_run += t2 - t1
            done += chunk
        reached = f"{done}" if done >= n else f"{done} of {n} (budget)"
        rows.append((n, reached, t_ss, t_run, done * YEAR / t_run, done * YEAR / (t_ss + t_run)))
        print(rows[-1], flush=True)
        if time.perf_counter() - start > args.budget:
            break
    print(
        f"\nchunk {chunk} men, rtol {args.rtol:g}; warm-up chunk (incl. compile): "
        f"steady state {t_ss_compile:.1f} s, year {t_run_compile:.1f} s"
    )
    print("| men | reached | steady state (s) | 1 year (s) | patient-years/s (year only) | patient-years/s (with steady state) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.4g} | {r[5]:.4g} |")
    print(f"total wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
