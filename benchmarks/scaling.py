"""Scaling of populations with worker processes and Dask workers: 1 vs 2 (and N men).

Usage:
    python benchmarks/scaling.py [--men 40] [--protocol reference|stiff]

Times, in one run, the same population (1 year, CPU engine, seeded healthy men) through
- `simulate_population(processes=1)` and `(processes=2)` (a fork-server process pool);
- `run_population(scheduler="processes:1")` and `("processes:2")` (a Dask LocalCluster, cluster start
  included; the start-up alone is timed with a 2-man, 1-day run);
- `run_population(scheduler="tcp://...")` on an already running LocalCluster of 1 and of 2 workers
  (start-up excluded), with the CPU seconds the workers used (from their own `getrusage`);
and prints speed-up and parallel efficiency (t1 / (2 x t2)). The CPU seconds show whether a second
worker adds work per man (overhead) independently of how busy the machine is. On a 2-core machine shared with other
work, the second core is not free: the load average before and after is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from vs_roadrunner import PROTOCOLS, YEAR


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _on_cluster(raw: dict, men: list, workers: int) -> tuple[float, float]:  # type: ignore[type-arg]
    """(CPU seconds used by the workers, wall seconds) for one run on a running LocalCluster, via tcp://."""
    from distributed import Client, LocalCluster

    from hpgsim.distributed import run_population

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40)
    with cluster as cl, Client(cl) as client:
        client.run(lambda: __import__("hpgsim.simulation"))  # imports paid before timing
        before = sum(client.run(_cpu_seconds).values())
        t0 = time.perf_counter()
        run_population(raw, men, scheduler=cl.scheduler_address)
        wall = time.perf_counter() - t0
        after = sum(client.run(_cpu_seconds).values())
    return after - before, wall


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--men", type=int, default=40)
    ap.add_argument("--protocol", default="reference", choices=sorted(PROTOCOLS))
    args = ap.parse_args()
    from hpgsim.distributed import run_population
    from hpgsim.population.phenotypes import sample_patients
    from hpgsim.simulation import simulate_population

    raw = PROTOCOLS[args.protocol]
    men = sample_patients("healthy", args.men, seed=0)
    simulate_population(raw, men[:1])  # warm the compiled-model cache
    print(f"load average before: {os.getloadavg()}", file=sys.stderr, flush=True)
    t_start = _timed(lambda: run_population({"duration": "1 day"}, men[:2], scheduler="processes:2"))
    rows = []
    cpu_rows: list[tuple[int, float, float]] = []
    t1 = _timed(lambda: simulate_population(raw, men, processes=1))
    t2 = _timed(lambda: simulate_population(raw, men, processes=2))
    rows.append(("process pool", t1, t2))
    print(rows[-1], file=sys.stderr, flush=True)
    d1 = _timed(lambda: run_population(raw, men, scheduler="processes:1"))
    d2 = _timed(lambda: run_population(raw, men, scheduler="processes:2"))
    rows.append(("Dask LocalCluster (incl. start-up)", d1, d2))
    print(rows[-1], file=sys.stderr, flush=True)
    for workers in (1, 2):  # an existing cluster (tcp://): start-up excluded, workers' CPU time measured
        cpu, wall = _on_cluster(raw, men, workers)
        cpu_rows.append((workers, wall, cpu))
        print(cpu_rows[-1], file=sys.stderr, flush=True)
    print(f"load average after: {os.getloadavg()}", file=sys.stderr, flush=True)
    print(f"{args.men} men, 1 year of {args.protocol}; Dask LocalCluster start-up + 2-man run: {t_start:.1f} s")
    print("| backend | 1 worker (s) | 2 workers (s) | speed-up | efficiency | patient-years/s with 2 |")
    print("|---|---|---|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.2f}x | {a / (2 * b):.0%} | {args.men * YEAR / b:.2f} |")
    if cpu_rows:
        (_, w1, c1), (_, w2, c2) = cpu_rows
        print(
            f"\nrunning cluster (tcp://, start-up excluded): 1 worker {w1:.1f} s wall, {c1:.1f} CPU s; "
            f"2 workers {w2:.1f} s wall, {c2:.1f} CPU s in total: speed-up {w1 / w2:.2f}x, wall efficiency {w1 / (2 * w2):.0%}; "
            f"work per man with 2 workers vs 1 (CPU s): {c2 / c1:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
