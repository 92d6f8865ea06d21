"""Speed benchmarks (not tests): seconds per patient-year, measured as ratios in one run.

Usage:
    python benchmarks/run.py [--men 1000] [--jax] [--jax-batch 8]

Prints a markdown table to paste into docs/performance.md with the machine it ran on.
Reference protocol (issue 2): 1 year of testosterone enanthate 200 mg weekly + anastrozole 1 mg daily +
hCG 500 IU every other day; stiff case: gonadorelin 100 ug twice weekly for 1 year.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE = {
    "name": "reference",
    "duration": "52 week",
    "regimens": [
        {"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week"},
        {"drug": "anastrozole", "dose": "1 mg", "every": "1 day"},
        {"drug": "hcg", "dose": "500 IU", "every": "2 day"},
    ],
}
STIFF = {"name": "stiff", "duration": "52 week", "regimens": [{"drug": "gonadorelin", "dose": "100 ug", "every": "3.5 day"}]}
YEAR = 52 * 7 / 365.25


def _median_time(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_engine(raw: dict) -> tuple[float, float]:
    """Warm CPU engine: (integration only, steady state + integration + observation) per patient-year."""
    from hpgsim.engine.schedule import build_schedule, output_grid
    from hpgsim.engine.steady import steady_state
    from hpgsim.population.phenotypes import typical_patient
    from hpgsim.protocol.schema import validate_protocol
    from hpgsim.simulation import model_for, simulate, solve_states

    prot = validate_protocol(raw)
    spec = model_for(prot)
    p = typical_patient("healthy").vector(spec)
    y0 = steady_state(spec, p)
    sch = build_schedule(spec, prot)
    grid = output_grid(prot.duration_h)
    solve_states(spec, p, y0, sch, grid)  # warm (compile)
    integ = _median_time(lambda: solve_states(spec, p, y0, sch, grid))
    full = _median_time(lambda: simulate(prot))
    return integ / YEAR, full / YEAR


def cli_call(raw: dict) -> float:
    import yaml

    with tempfile.TemporaryDirectory() as d:
        proto = Path(d) / "p.yaml"
        proto.write_text(yaml.safe_dump(raw))
        exe = Path(sys.executable).with_name("hpgsim")
        t0 = time.perf_counter()
        subprocess.run([str(exe), "simulate", str(proto), "--out", str(Path(d) / "out")], check=True, capture_output=True)
        return time.perf_counter() - t0


def population(raw: dict, men: int, processes: int) -> float:
    from hpgsim.population.phenotypes import sample_patients
    from hpgsim.simulation import simulate_population

    patients = sample_patients("healthy", men, seed=0)
    t0 = time.perf_counter()
    simulate_population(raw, patients, processes=processes)
    return time.perf_counter() - t0


def jax_engine(raw: dict, batch: int) -> tuple[float, float, float]:
    """(compile + first run, warm single, warm batched per patient) in seconds per patient-year."""
    from hpgsim.engine.jax_engine import enable_float64

    enable_float64()
    from hpgsim.population.phenotypes import sample_patients
    from hpgsim.simulation import simulate, simulate_population

    men = sample_patients("healthy", batch, seed=0)
    t0 = time.perf_counter()
    simulate(raw, men[0], engine="jax")
    first = time.perf_counter() - t0
    single = _median_time(lambda: simulate(raw, men[0], engine="jax"), repeats=2)
    simulate_population(raw, men, engine="jax")  # compile the batched function
    batched = _median_time(lambda: simulate_population(raw, men, engine="jax"), repeats=2) / batch
    return first / YEAR, single / YEAR, batched / YEAR


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--men", type=int, default=1000)
    ap.add_argument("--jax", action="store_true", help="also time the JAX engine (slow on CPU)")
    ap.add_argument("--jax-batch", type=int, default=8)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    rows = []
    for raw in (REFERENCE, STIFF):
        integ, full = cpu_engine(raw)
        rows.append((raw["name"], "CPU engine warm, integration only", f"{integ:.3f} s/patient-year"))
        rows.append((raw["name"], "CPU engine warm, simulate() incl. steady state", f"{full:.3f} s/patient-year"))
        rows.append((raw["name"], "hpgsim simulate (whole CLI call, 1 year)", f"{cli_call(raw):.2f} s"))
    t1 = population(REFERENCE, args.men, 1)
    t2 = population(REFERENCE, args.men, 2)
    rows.append(("reference", f"population of {args.men}, 1 process", f"{t1:.1f} s ({t1 / args.men / YEAR:.3f} s/patient-year)"))
    rows.append(("reference", f"population of {args.men}, 2 processes", f"{t2:.1f} s (speed-up {t1 / t2:.2f}x)"))
    if args.jax:
        for raw in (REFERENCE, STIFF):
            first, single, batched = jax_engine(raw, args.jax_batch)
            rows.append((raw["name"], "JAX engine (CPU) compile + first run", f"{first:.1f} s/patient-year"))
            rows.append((raw["name"], "JAX engine (CPU) warm single", f"{single:.2f} s/patient-year"))
            rows.append((raw["name"], f"JAX engine (CPU) warm batch of {args.jax_batch}", f"{batched:.2f} s/patient-year"))
    print("| protocol | measurement | result |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
