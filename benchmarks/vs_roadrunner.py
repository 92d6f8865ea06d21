"""hpgsim's CPU engine vs the plain libRoadRunner loop a QSP user would write, same SBML, same men.

Usage:
    python benchmarks/vs_roadrunner.py [--men 1,100] [--protocol reference|stiff|both] [--check 10]

Baseline (what a QSP user writes): the exported SBML (`hpgsim.interop.sbml.export_sbml`: doses as SBML
events, one per regimen with a dose counter) loaded once into RoadRunner with its default settings
(CVODE, rtol 1e-6) except per-state absolute tolerances: with RoadRunner's default scalar atol
(1e-12) CVODE fails on this model (the table says so; scalars 1e-10 to 1e-6 fail too). For each man:
``resetAll()`` (time 0, dose counters 0, the t = 0 doses fire), set his steady state (physiology
states; drug compartments are 0 untreated), the tolerances and his parameters, ``simulate(0, T, points)``
with daily points.
hpgsim: ``simulation.solve_states`` (the CPU engine), same men, same initial states, same daily grid.

Both are timed in the same process, interleaved man by man (integration only: each man's steady state is
computed once, before timing, and given to both). Accuracy: for the first `--check` men, both against
hpgsim at rtol 1e-10 (the reference), max over days and canonical quantities (drug concentrations
excluded: they jump at doses, and RoadRunner reports a dose time after its event, hpgsim before) of
|x - ref| / max(|ref|, 1e-3 x max|ref| of that quantity over the year).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np

PROTOCOLS: dict[str, dict[str, Any]] = {
    "reference": {
        "name": "reference",
        "duration": "52 week",
        "regimens": [
            {"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week"},
            {"drug": "anastrozole", "dose": "1 mg", "every": "1 day"},
            {"drug": "hcg", "dose": "500 IU", "every": "2 day"},
        ],
    },
    "stiff": {
        "name": "stiff",
        "duration": "52 week",
        "regimens": [{"drug": "gonadorelin", "dose": "100 ug", "every": "3.5 day"}],
    },
}
YEAR = 52 * 7 / 365.25  # patient-years in one 52-week protocol


class Baseline:
    """The plain loop: the exported SBML (doses as events) in one RoadRunner, default integrator settings."""

    def __init__(self, prot: Any, spec: Any, grid: np.ndarray, atol: np.ndarray | None) -> None:
        import roadrunner

        from hpgsim.interop.sbml import export_sbml

        roadrunner.Logger.setLevel(roadrunner.Logger.LOG_ERROR)
        self.rr = roadrunner.RoadRunner(export_sbml(prot))
        self.rr.selections = ["time", *spec.state_names]
        self.spec = spec
        # Drug compartments are 0 in every untreated steady state, and resetAll() has just dosed them at t = 0;
        # only the physiology states are set per man. (Setting init() values instead makes RoadRunner
        # regenerate the model: ~20 s per man.)
        self.phys = [i for i, s in enumerate(spec.states) if s.owner == "physiology"]
        self.phys_names = [spec.state_names[i] for i in self.phys]
        self.n_points = grid.size
        self.t_end = float(grid[-1])
        self.atol = atol

    def solve(self, params: np.ndarray, y0: np.ndarray) -> np.ndarray:
        rr = self.rr
        rr.resetAll()  # time 0, the file's initial values, dose counters 0, the t = 0 doses fire
        rr.setValues(self.phys_names, [float(y0[i]) for i in self.phys])
        if self.atol is not None:
            for name, a in zip(self.spec.state_names, self.atol, strict=True):
                rr.integrator.setIndividualTolerance(name, float(a))
        rr.setValues(self.spec.parameter_names, [float(v) for v in params])
        out = rr.simulate(0.0, self.t_end, self.n_points)
        return np.asarray(out)[:, 1:]


def canonical_error(spec: Any, p: np.ndarray, ys: np.ndarray, ref: np.ndarray, grid: np.ndarray) -> float:
    from hpgsim.simulation import observe_states

    a = observe_states(spec, p, ys, grid)
    b = observe_states(spec, p, ref, grid)
    cols = [c for c in b.columns if not c.endswith("_concentration")]
    x, r = a[cols].to_numpy(), b[cols].to_numpy()
    floor = np.maximum(1e-3 * np.max(np.abs(r), axis=0), 1e-300)
    return float(np.max(np.abs(x - r) / np.maximum(np.abs(r), floor)))


def compare(name: str, sizes: list[int], check: int, quiet: Any) -> list[tuple[str, ...]]:
    from hpgsim.engine.schedule import build_schedule, output_grid
    from hpgsim.engine.steady import steady_state
    from hpgsim.population.phenotypes import sample_patients, typical_patient
    from hpgsim.protocol.schema import validate_protocol
    from hpgsim.simulation import model_for, solve_states, tolerances

    prot = validate_protocol(PROTOCOLS[name])
    spec = model_for(prot)
    sch = build_schedule(spec, prot)
    grid = output_grid(prot.duration_h)
    p_typ = typical_patient("healthy").vector(spec)
    y_typ = steady_state(spec, p_typ)
    try:
        with quiet():
            Baseline(prot, spec, grid, None).solve(p_typ, y_typ)
        defaults = "ran"
    except RuntimeError as exc:
        defaults = f"fails: {str(exc).split(':')[1].strip()}"
    print(f"[{name}] plain RoadRunner with its default tolerances: {defaults}", file=sys.stderr, flush=True)
    # per-state absolute tolerances as hpgsim's (from the typical man; rtol stays RoadRunner's 1e-6)
    base = Baseline(prot, spec, grid, tolerances(spec, y_typ, sch, 1e-6))
    n_max = max(sizes)
    from hpgsim.errors import SimulationError

    P_list, Y_list, skipped = [], [], 0
    for m in sample_patients("healthy", n_max + n_max // 10 + 5, seed=0):
        p = m.vector(spec)
        try:
            Y_list.append(steady_state(spec, p))
        except SimulationError:  # a sampled man with no untreated steady state: left out of both
            skipped += 1
            continue
        P_list.append(p)
        if len(P_list) == n_max:
            break
    P, Y0 = np.stack(P_list), np.stack(Y_list)
    if skipped:
        print(f"[{name}] {skipped} sampled men without an untreated steady state left out", file=sys.stderr, flush=True)
    with quiet():
        solve_states(spec, P[0], Y0[0], sch, grid)  # warm both (compile, caches)
        base.solve(P[0], Y0[0])
    rows = []
    print(f"[{name}] {sch.n} doses; {grid.size} output days", file=sys.stderr, flush=True)
    for n in sizes:
        reps = 3 if n == 1 else 1
        th, tb = [], []
        with quiet():
            for _ in range(reps):
                h = b = 0.0
                for i in range(n):  # interleaved man by man, so that load changes hit both alike
                    t0 = time.perf_counter()
                    solve_states(spec, P[i], Y0[i], sch, grid)
                    t1 = time.perf_counter()
                    base.solve(P[i], Y0[i])
                    t2 = time.perf_counter()
                    h += t1 - t0
                    b += t2 - t1
                th.append(h)
                tb.append(b)
        h, b = statistics.median(th), statistics.median(tb)
        rows.append(
            (
                name,
                str(n),
                f"{n * YEAR / h:.2f}",
                f"{n * YEAR / b:.2f}",
                f"**{b / h:.2f}x**",
                f"{h / n / YEAR:.3f} / {b / n / YEAR:.3f}",
            )
        )
        print(rows[-1], file=sys.stderr, flush=True)
    errs_h, errs_b = [], []
    with quiet():
        for i in range(min(check, n_max)):
            ref = solve_states(spec, P[i], Y0[i], sch, grid, rtol=1e-10)
            errs_h.append(canonical_error(spec, P[i], solve_states(spec, P[i], Y0[i], sch, grid), ref, grid))
            errs_b.append(canonical_error(spec, P[i], base.solve(P[i], Y0[i]), ref, grid))
    rows.append((name, "plain loop with RoadRunner's default scalar atol", "", defaults, "", ""))
    if errs_h:
        rows.append((name, f"accuracy vs rtol 1e-10, {len(errs_h)} men", f"{max(errs_h):.1e}", f"{max(errs_b):.1e}", "", ""))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--men", default="1,100", help="comma-separated population sizes")
    ap.add_argument("--protocol", default="both", choices=["reference", "stiff", "both"])
    ap.add_argument("--check", type=int, default=10, help="men checked against the rtol 1e-10 reference")
    args = ap.parse_args()
    from hpgsim.engine.roadrunner_engine import quiet_stderr

    sizes = [int(s) for s in args.men.split(",")]
    names = ["reference", "stiff"] if args.protocol == "both" else [args.protocol]
    rows = []
    for name in names:
        rows.extend(compare(name, sizes, args.check, quiet_stderr))
    print(
        "| protocol | men | hpgsim patient-years/s | plain RoadRunner patient-years/s | ratio | s/patient-year (hpgsim / plain) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
