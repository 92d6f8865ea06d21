"""Simulate one man or a population under a protocol: spec -> steady state -> engine -> observables.

This is the public entry for dynamics; the CLI and later layers call only these functions.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from hpgsim.engine.codegen import numpy_functions
from hpgsim.engine.schedule import DoseSchedule, build_schedule, output_grid
from hpgsim.engine.steady import steady_state
from hpgsim.errors import HpgsimError, ProtocolError
from hpgsim.model.spec import ModelSpec, drug_dependencies, load_model
from hpgsim.population.phenotypes import Patient, typical_patient
from hpgsim.protocol.schema import Protocol, accept, load_protocol, protocol_flags, validate_protocol

EngineName = Literal["roadrunner", "jax"]
E2_LOW_PG_ML = 10.0
DISCLAIMER = (
    "hpgsim is a research and education tool, not a medical device: these are model predictions, "
    "not advice; it never recommends a drug or a dose."
)


@dataclass(frozen=True)
class SimulationResult:
    """One man's simulated course.

    Attributes:
        patient: the man's label.
        protocol: the validated protocol.
        observables: DataFrame indexed by `day` with the canonical quantities (DESIGN.md section 2 units)
            and the concentrations of the protocol's drugs.
        flags: warnings (doses outside the validated range, E2 over-suppression, provisional phenotype).
        model_digest: hash of the model definition the result came from.
        engine: "roadrunner" or "jax".
    """

    patient: str
    protocol: Protocol
    observables: pd.DataFrame
    flags: tuple[str, ...]
    model_digest: str
    engine: str

    @property
    def days(self) -> np.ndarray:
        return self.observables.index.to_numpy()


def as_protocol(protocol: Protocol | str | Path | dict[str, Any]) -> Protocol:
    """Accept a Protocol, a path to a protocol file, or a mapping (validated)."""
    return accept(
        protocol,
        Protocol,
        load_protocol,
        lambda raw: validate_protocol(raw, source="protocol"),
        ProtocolError,
        "protocol: expected a file path, a mapping or a Protocol",
    )


def model_for(protocol: Protocol, prune: bool = True) -> ModelSpec:
    """The model with the protocol's drugs only (prune=True) or with every drug."""
    if not prune:
        return load_model()
    return load_model(drug_dependencies(frozenset(r.drug for r in protocol.regimens)))


def tolerances(spec: ModelSpec, y0: np.ndarray, schedule: DoseSchedule, rtol: float) -> np.ndarray:
    """Per-state absolute tolerances: rtol x 1e-2 x the state's scale (baseline value or largest dose)."""
    scale = np.maximum(np.abs(np.asarray(y0, dtype=float)), 1e-3)
    owner = [s.owner for s in spec.states]
    for i, s in enumerate(spec.states):
        if s.owner != "physiology":
            same = [j for j, o in enumerate(owner) if o == s.owner]
            amounts = schedule.amounts[np.isin(schedule.state_index, same)]
            scale[i] = max(float(amounts.max()) if amounts.size else 1.0, 1e-6)
    return rtol * 1e-2 * scale


@lru_cache(maxsize=8)
def _roadrunner(spec: ModelSpec) -> Any:
    from hpgsim.engine.roadrunner_engine import RoadRunnerEngine

    return RoadRunnerEngine(spec)


@lru_cache(maxsize=8)
def _jax(spec: ModelSpec, rtol: float) -> Any:
    from hpgsim.engine.jax_engine import JaxEngine, enable_compilation_cache, enable_float64

    enable_float64()
    enable_compilation_cache()
    return JaxEngine(spec, rtol=rtol)


def solve_states(
    spec: ModelSpec,
    params: np.ndarray,
    y0: np.ndarray,
    schedule: DoseSchedule,
    times_h: np.ndarray,
    engine: EngineName = "roadrunner",
    rtol: float = 1e-6,
    patient: str = "patient",
) -> np.ndarray:
    """Integrate one man with the chosen engine; states at `times_h`, shape (n_times, n_states)."""
    atol = tolerances(spec, y0, schedule, rtol)
    if engine == "roadrunner":
        eng = _roadrunner(spec)
        eng.set_tolerances(rtol, atol)
        return np.asarray(eng.solve(params, y0, schedule, times_h, patient=patient))
    if engine == "jax":
        jeng = _jax(spec, rtol)
        jeng.atol = atol
        return np.asarray(jeng.solve(params, y0, schedule, times_h, patient=patient))
    raise HpgsimError(f"unknown engine {engine!r}; use 'roadrunner' (CPU, default) or 'jax'.")


def observe_states(spec: ModelSpec, params: np.ndarray, states: np.ndarray, times_h: np.ndarray) -> pd.DataFrame:
    """Canonical observables of a state trajectory (n_times, n_states) as a DataFrame indexed by day.

    Every observable is a level or a ratio of levels, so it is non-negative; values within solver tolerance
    of zero that come out negative (e.g. -2e-21 M/mL sperm in an untreated GnRH-deficient man) are shown as 0.
    """
    obs = np.maximum(np.asarray(numpy_functions(spec).observe(states.T, params), dtype=float), 0.0)
    df = pd.DataFrame(obs.T, columns=spec.observable_names)
    df.insert(0, "day", np.asarray(times_h) / 24.0)
    return df.set_index("day")


def result_flags(protocol: Protocol, observables: pd.DataFrame, phenotype: str | None, spec: ModelSpec) -> list[str]:
    """Flags attached to a result: validated-range checks and estradiol over-suppression."""
    flags = protocol_flags(protocol, spec)
    e2 = observables["estradiol"]
    on = e2[e2.index > 0]
    if len(on) and float(on.min()) < E2_LOW_PG_ML:
        day = float(on.idxmin())
        flags.append(
            f"estradiol falls below {E2_LOW_PG_ML:g} pg/mL (lowest {float(on.min()):.1f} pg/mL, day {day:g}): "
            "estradiol over-suppression; bone, libido and lipid risks are noted, not modelled"
        )
    if phenotype is not None:
        from hpgsim.population.phenotypes import get_phenotype

        ph = get_phenotype(phenotype)
        if ph.status != "calibrated":
            flags.append(
                f"phenotype '{phenotype}' is {ph.status}: its own factors were set by hand, not fitted to the study set "
                "(the shared model parameters are calibrated)"
            )
    return flags


def simulate(
    protocol: Protocol | str | Path | dict[str, Any],
    patient: Patient | None = None,
    phenotype: str = "healthy",
    engine: EngineName = "roadrunner",
    output_step_h: float = 24.0,
    rtol: float = 1e-6,
    prune: bool = True,
    start_from: Patient | None = None,
) -> SimulationResult:
    """Simulate one man under a protocol.

    Args:
        protocol: a Protocol, a protocol file path, or a mapping in the protocol-file format.
        patient: the man; default the phenotype's typical (median) man.
        phenotype: used when `patient` is None.
        engine: "roadrunner" (CPU, default) or "jax" (diffrax).
        output_step_h: spacing of output rows in hours (24 = daily).
        rtol: solver relative tolerance.
        prune: compile only the protocol's drugs (faster; identical physiology).
        start_from: start at this man's untreated steady state instead of `patient`'s: a perturbation
            from day 0 (e.g. `patient` = the same man with Leydig steroidogenesis blocked).

    Returns:
        The result with observables from day 0 (baseline, before any dose) to the end.
    """
    prot = as_protocol(protocol)
    man = patient if patient is not None else typical_patient(phenotype)
    spec = model_for(prot, prune)
    params = man.vector(spec)
    start = man if start_from is None else start_from
    y0 = steady_state(spec, params if start_from is None else start_from.vector(spec), patient=start.name)
    schedule = build_schedule(spec, prot)
    times = output_grid(prot.duration_h, output_step_h)
    states = solve_states(spec, params, y0, schedule, times, engine=engine, rtol=rtol, patient=man.name)
    obs = observe_states(spec, params, states, times)
    flags = result_flags(prot, obs, man.phenotype, spec)
    return SimulationResult(man.name, prot, obs, tuple(flags), spec.digest(), engine)


_POOLS: dict[tuple[Any, ...], ProcessPoolExecutor] = {}


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool kept for the life of this process and reused by every population run.

    Starting workers and loading the model in each costs about a second per run; a validation run makes
    43 of them. Workers come from a fork server, never a fork of this process: this process may hold
    JAX's threads (the JAX engine), and forking a multithreaded process can deadlock. The pool is keyed
    by the HPGSIM_* environment (e.g. HPGSIM_UNCALIBRATED), which workers read when they start: a
    changed environment, or a broken pool, gets a fresh one.
    """
    key = (workers, tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("HPGSIM_"))))
    pool = _POOLS.get(key)
    if pool is not None and not getattr(pool, "_broken", False):
        return pool
    drop_worker_pools()
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["hpgsim.simulation"])
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    _POOLS[key] = pool
    return pool


def drop_worker_pools() -> None:
    """Shut down the kept worker pools (a new run starts fresh workers)."""
    for pool in _POOLS.values():
        pool.shutdown(wait=False, cancel_futures=True)
    _POOLS.clear()


def _simulate_one(args: tuple[Protocol, Patient, EngineName, float, float]) -> SimulationResult:
    prot, man, engine, step, rtol = args
    return simulate(prot, man, engine=engine, output_step_h=step, rtol=rtol)


def simulate_population(
    protocol: Protocol | str | Path | dict[str, Any],
    patients: Sequence[Patient],
    engine: EngineName = "roadrunner",
    processes: int = 1,
    output_step_h: float = 24.0,
    rtol: float = 1e-6,
    progress: Callable[[int, int], None] | None = None,
) -> list[SimulationResult]:
    """Simulate many men under one protocol, in `processes` worker processes (CPU engine per worker).

    Results come back in the order of `patients`, identical to a loop of :func:`simulate`.
    """
    prot = as_protocol(protocol)
    if engine == "jax":
        return _simulate_population_jax(prot, patients, output_step_h, rtol)
    jobs = [(prot, p, engine, output_step_h, rtol) for p in patients]
    n = len(jobs)
    if processes <= 1 or n <= 1:
        out = []
        for i, job in enumerate(jobs):
            out.append(_simulate_one(job))
            if progress:
                progress(i + 1, n)
        return out
    workers = min(processes, n, os.cpu_count() or 1)
    results: list[SimulationResult] = []
    chunk = max(1, n // (workers * 4))
    pool = worker_pool(workers)
    for i, res in enumerate(pool.map(_simulate_one, jobs, chunksize=chunk)):
        results.append(res)
        if progress:
            progress(i + 1, n)
    return results


def _simulate_population_jax(
    prot: Protocol, patients: Sequence[Patient], output_step_h: float, rtol: float
) -> list[SimulationResult]:
    """All men in one ``vmap``-ed JAX call (they share the protocol's dose times)."""
    spec = model_for(prot)
    names = [m.name for m in patients]
    params = np.stack([m.vector(spec) for m in patients])
    y0 = np.stack([steady_state(spec, p, patient=n) for p, n in zip(params, names, strict=True)])
    schedule = build_schedule(spec, prot)
    times = output_grid(prot.duration_h, output_step_h)
    eng = _jax(spec, rtol)
    # one tolerance vector for the batch: the smallest per-state scale over the men
    eng.atol = np.min(np.stack([tolerances(spec, y, schedule, rtol) for y in y0]), axis=0)
    states = eng.solve_batch(params, y0, schedule, times, names)
    out = []
    for man, p, ys in zip(patients, params, states, strict=True):
        obs = observe_states(spec, p, ys, times)
        out.append(
            SimulationResult(man.name, prot, obs, tuple(result_flags(prot, obs, man.phenotype, spec)), spec.digest(), "jax")
        )
    return out
