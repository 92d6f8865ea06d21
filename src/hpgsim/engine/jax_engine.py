"""The JAX engine: diffrax (Kvaerno5, float64) over the same generated model, for GPUs and gradients.

The dose and output times are merged into one grid; a ``lax.scan`` walks the grid, integrating each
segment in local time with ``diffeqsolve`` and adding the doses at its end. Parameters, initial
states and dose amounts are runtime arrays, so one compiled function serves every patient, and
``vmap`` over patients (who share dose times) is free. The caller must switch on float64
(:func:`enable_float64`); nothing is changed at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from hpgsim.engine.codegen import compile_functions
from hpgsim.engine.schedule import DoseSchedule, segment_grid
from hpgsim.errors import SimulationError
from hpgsim.model.spec import ModelSpec


def enable_float64() -> None:
    """Switch JAX to float64 (call from entry points: CLI, API, tests; never at import)."""
    import jax

    jax.config.update("jax_enable_x64", True)


def enable_compilation_cache() -> None:
    """Keep compiled JAX functions on disk between processes (an entry-point setting, like float64).

    Equinox's runtime error checks use host callbacks, which stop XLA from caching; with
    ``throw=False`` the engine reports failures itself, so ``EQX_ON_ERROR=nan`` loses nothing.
    Set ``HPGSIM_NO_CACHE=1`` to disable.
    """
    import os

    if os.environ.get("HPGSIM_NO_CACHE"):
        return
    os.environ.setdefault("EQX_ON_ERROR", "nan")
    import jax

    base = os.environ.get("HPGSIM_CACHE_DIR")
    if base is None:
        import platformdirs

        base = platformdirs.user_cache_dir("hpgsim")
    jax.config.update("jax_compilation_cache_dir", os.path.join(base, "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


@dataclass(frozen=True)
class _Plan:
    grid: np.ndarray  # (m,)
    is_output: np.ndarray  # (m,)
    increments: np.ndarray  # (m, n_states) dose added at each grid time


PAD = 128


def _plan(spec: ModelSpec, schedule: DoseSchedule, output_times_h: np.ndarray) -> _Plan:
    grid, is_output, dose_rows = segment_grid(schedule, np.asarray(output_times_h, dtype=float))
    inc = np.zeros((grid.size, len(spec.states)))
    np.add.at(inc, (dose_rows, schedule.state_index), schedule.amounts)
    # Pad with zero-length segments to a multiple of PAD so that protocols of similar length share
    # one compiled function (the scan length is static).
    m = grid.size
    m_pad = int(np.ceil(m / PAD) * PAD)
    if m_pad > m:
        grid = np.concatenate([grid, np.full(m_pad - m, grid[-1])])
        is_output = np.concatenate([is_output, np.zeros(m_pad - m, dtype=bool)])
        inc = np.concatenate([inc, np.zeros((m_pad - m, inc.shape[1]))])
    return _Plan(grid, is_output, inc)


class JaxEngine:
    """diffrax engine for one model (compiled once per grid length).

    Args:
        spec: the model.
        rtol: relative tolerance of the PID step-size controller.
        atol: absolute tolerance, a scalar or shape (n_states,) in each state's unit.
        max_steps: step budget per segment.
    """

    def __init__(self, spec: ModelSpec, rtol: float = 1e-8, atol: float | np.ndarray = 1e-10, max_steps: int = 20000) -> None:
        import jax

        if not jax.config.read("jax_enable_x64"):
            raise SimulationError(
                "the JAX engine needs float64: call hpgsim.engine.jax_engine.enable_float64() (the CLI and API do this)."
            )
        self.spec = spec
        self.rtol = rtol
        self.atol = np.broadcast_to(np.asarray(atol, dtype=float), (len(spec.states),)).copy()
        self.max_steps = max_steps
        self._fns = compile_functions(spec, __import__("jax.numpy", fromlist=["numpy"]))

    @lru_cache(maxsize=16)  # noqa: B019 - one engine per model, few grid lengths
    def _compiled(self, batched: bool) -> Any:
        import diffrax
        import jax
        import jax.numpy as jnp

        rhs = self._fns.rhs
        term = diffrax.ODETerm(lambda t, y, args: rhs(t + args[1], y, args[0]))
        solver = diffrax.Kvaerno5()
        rtol = self.rtol
        max_steps = self.max_steps

        def one(params: Any, y0: Any, grid: Any, increments: Any, atol: Any) -> tuple[Any, Any]:
            # atol is a runtime array: changing it does not recompile
            controller = diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.3)

            def step(y: Any, seg: Any) -> tuple[Any, tuple[Any, Any]]:
                t0, t1, inc = seg
                # integrate in local time (0 .. t1 - t0); absolute time passed as an argument
                sol = diffrax.diffeqsolve(
                    term,
                    solver,
                    t0=0.0,
                    t1=t1 - t0,
                    dt0=None,
                    y0=y,
                    args=(params, t0),
                    stepsize_controller=controller,
                    max_steps=max_steps,
                    throw=False,
                    saveat=diffrax.SaveAt(t1=True),
                )
                y_end = sol.ys[-1]
                ok = sol.result == diffrax.RESULTS.successful
                return y_end + inc, (y_end, ok)

            y_start = y0 + increments[0]
            _, (ys, oks) = jax.lax.scan(step, y_start, (grid[:-1], grid[1:], increments[1:]))
            return jnp.concatenate([y0[None, :], ys], axis=0), oks

        fn = jax.vmap(one, in_axes=(0, 0, None, None, None)) if batched else one
        return jax.jit(fn)

    @lru_cache(maxsize=2)  # noqa: B019
    def _compiled_steady(self) -> Any:
        import diffrax
        import jax
        import jax.numpy as jnp

        from hpgsim.engine.steady import start_vector

        rhs = self._fns.rhs
        phys = np.array([s.owner == "physiology" for s in self.spec.states])
        idx = jnp.asarray(np.flatnonzero(phys))
        y_start = jnp.asarray(start_vector(self.spec))
        term = diffrax.ODETerm(lambda t, y, p: rhs(t, y, p))
        controller = diffrax.PIDController(rtol=1e-8, atol=1e-10, pcoeff=0.3, icoeff=0.3)

        def one(p: Any) -> tuple[Any, Any]:
            sol = diffrax.diffeqsolve(
                term,
                diffrax.Kvaerno5(),
                0.0,
                40 * 8760.0,
                None,
                y_start,
                args=p,
                stepsize_controller=controller,
                max_steps=20000,
                throw=False,
                saveat=diffrax.SaveAt(t1=True),
            )
            y = sol.ys[-1]

            def f_phys(x: Any) -> Any:
                return rhs(0.0, y.at[idx].set(x), p)[idx]

            x = y[idx]
            for _ in range(6):  # Newton polish from near equilibrium
                jac = jax.jacfwd(f_phys)(x)
                x = x - jnp.linalg.solve(jac, f_phys(x))
            resid = jnp.max(jnp.abs(f_phys(x)) / jnp.maximum(jnp.abs(x), 1.0))
            return jnp.zeros_like(y).at[idx].set(x), resid

        return jax.jit(jax.vmap(one))

    def steady_state_batch(self, params: np.ndarray, patients: list[str] | None = None) -> np.ndarray:
        """Untreated steady states of a batch, shape (n_patients, n_states), computed in JAX (vmap).

        Same method as :func:`hpgsim.engine.steady.steady_state` (integrate 40 years untreated, then
        Newton), for batches too large for the SciPy loop (GPU).

        Raises:
            SimulationError: a patient's residual stays above 1e-6 (names the first such patient).
        """
        import jax.numpy as jnp

        ys, resid = self._compiled_steady()(jnp.asarray(params, dtype=jnp.float64))
        ys, resid = np.asarray(ys), np.asarray(resid)
        bad = ~(resid <= 1e-6) | ~np.all(np.isfinite(ys), axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            name = patients[i] if patients else f"patient {i}"
            raise SimulationError(f"{name}: no untreated steady state found in JAX (residual {resid[i]:.2e}).")
        return ys

    def solve(
        self, params: np.ndarray, y0: np.ndarray, schedule: DoseSchedule, output_times_h: np.ndarray, patient: str = "patient"
    ) -> np.ndarray:
        """Integrate one patient; returns states at the output times, shape (n_out, n_states) (pre-dose)."""
        out = self.solve_batch(np.asarray(params)[None, :], np.asarray(y0)[None, :], schedule, output_times_h, [patient])
        return out[0]

    def solve_batch(
        self,
        params: np.ndarray,
        y0: np.ndarray,
        schedule: DoseSchedule,
        output_times_h: np.ndarray,
        patients: list[str] | None = None,
    ) -> np.ndarray:
        """Integrate a batch of patients sharing one dose schedule (``vmap``).

        Args:
            params: shape (n_patients, n_params).
            y0: shape (n_patients, n_states).
            schedule: shared dose events.
            output_times_h: shape (n_out,), hours.
            patients: labels for error messages.

        Returns:
            States, shape (n_patients, n_out, n_states), recorded before any dose at each output time.

        Raises:
            SimulationError: a segment failed; names the patient and the time reached.
        """
        import jax.numpy as jnp

        plan = _plan(self.spec, schedule, output_times_h)
        fn = self._compiled(True)
        ys, oks = fn(
            jnp.asarray(params, dtype=jnp.float64),
            jnp.asarray(y0, dtype=jnp.float64),
            jnp.asarray(plan.grid),
            jnp.asarray(plan.increments),
            jnp.asarray(self.atol),
        )
        ys = np.asarray(ys)
        oks = np.asarray(oks)
        names = patients or [f"patient {i}" for i in range(ys.shape[0])]
        for b in range(ys.shape[0]):
            if not oks[b].all():
                seg = int(np.argmin(oks[b]))
                raise SimulationError(
                    f"{names[b]}: the JAX solver failed between day {plan.grid[seg] / 24:.3f} and "
                    f"{plan.grid[seg + 1] / 24:.3f} (step budget or step-size underflow)."
                )
            if not np.all(np.isfinite(ys[b])):
                raise SimulationError(f"{names[b]}: non-finite state in the JAX solution.")
        return ys[:, plan.is_output, :]
