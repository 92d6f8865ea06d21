"""NUTS divergences of `hpgsim.fit` at XLA's backend optimisation level 0 and at XLA's default level.

Runs the fits of tests/test_fit.py::test_nuts_recovers_known_parameters (three synthetic men, seeds
3, 4, 5; 2 chains of 150 warm-up + 150 draws) in a fresh process per XLA setting, because XLA_FLAGS
only counts before JAX starts. docs/fit.md quotes its output.

    .venv/bin/python benchmarks/fit_divergences.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import hpgsim
from test_fit import synthetic_labs
out = []
for seed in (3, 4, 5):
    labs, _ = synthetic_labs(seed)
    res = hpgsim.fit(labs, seed=seed, num_warmup=150, num_samples=150, num_chains=2)
    d = res.summary["diagnostics"]
    out.append(f"seed {seed}: {d['divergences']} divergences, max R-hat {d['max_r_hat']:.3f}")
print("; ".join(out))
"""

SETTINGS = {
    "level 0 (hpgsim.fit's default in a fresh process)": "--xla_backend_optimization_level=0",
    # any XLA_FLAGS value stops hpgsim.fit from choosing level 0; this flag leaves the level at XLA's default
    "XLA default level": "--xla_cpu_enable_fast_math=false",
}


def main() -> None:
    tests = str(Path(__file__).parents[1] / "tests")
    for label, flags in SETTINGS.items():
        env = dict(os.environ, XLA_FLAGS=flags)
        res = subprocess.run([sys.executable, "-c", CHILD, tests], env=env, capture_output=True, text=True, check=True)
        print(f"{label}: {res.stdout.strip().splitlines()[-1]}", flush=True)


if __name__ == "__main__":
    main()
