"""Time `hpgsim.fit` on a 3-visit labs file: NUTS (default settings) and --fast (MAP + Laplace).

Each fit runs in a fresh process, first with an empty JAX compilation cache ("cold": what a user's
first fit costs) and then again with the cache it left ("warm": every later fit of a labs file with
the same number of results). Wall time and the child's CPU time are reported with the load average:
on a shared machine wall time exceeds CPU time when other work competes for the cores.

    .venv/bin/python benchmarks/fit_bench.py [--labs examples/labs/subfertile_man.yaml] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import hpgsim
from hpgsim.fit.api import fit
t1 = time.perf_counter()
res = fit(sys.argv[1], fast=sys.argv[2] == "fast", seed=0, dense_mass=sys.argv[2] != "nuts-diag")
t2 = time.perf_counter()
d = res.summary["diagnostics"]
print(json.dumps({"import_s": t1 - t0, "fit_s": t2 - t1, "max_r_hat": d.get("max_r_hat"), "min_ess": d.get("min_ess"),
                  "divergences": d.get("divergences"), "leapfrog": d.get("mean_leapfrog_steps")}))
"""


def run_child(labs: str, mode: str, cache: str) -> dict[str, Any]:
    env = dict(os.environ, HPGSIM_CACHE_DIR=cache)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, labs, mode], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["process_wall_s"] = wall
    row["process_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row["load_avg_1min"] = os.getloadavg()[0]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labs", default=str(Path(__file__).parents[1] / "examples" / "labs" / "subfertile_man.yaml"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--modes", default="fast,nuts", help="comma-separated: fast, nuts, nuts-diag (diagonal mass matrix)")
    ap.add_argument(
        "--xla-default",
        action="store_true",
        help="keep XLA's default optimisation level (hpgsim.fit otherwise compiles with level 0 when XLA_FLAGS is unset)",
    )
    args = ap.parse_args()
    if args.xla_default:
        os.environ["XLA_FLAGS"] = ""
    rows = []
    print(f"machine: {os.cpu_count()} CPUs; labs: {args.labs}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '(unset)')!r}")
    print(f"{'mode':5} {'cache':5} {'fit s':>7} {'wall s':>7} {'CPU s':>7} {'load':>5}  diagnostics")
    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory(prefix="hpgsim-bench-cache-") as cache:
            for label in ("cold", "warm"):
                r = run_child(args.labs, mode, cache)
                r.update({"mode": mode, "cache": label})
                rows.append(r)
                diag = (
                    f"R-hat {r['max_r_hat']:.3f}, min ESS {r['min_ess']:.0f}, divergences {r['divergences']}, "
                    f"leapfrog/draw {r['leapfrog']:.1f}"
                    if mode.startswith("nuts")
                    else ""
                )
                print(
                    f"{mode:5} {label:5} {r['fit_s']:7.1f} {r['process_wall_s']:7.1f} {r['process_cpu_s']:7.1f} "
                    f"{r['load_avg_1min']:5.1f}  {diag}",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
