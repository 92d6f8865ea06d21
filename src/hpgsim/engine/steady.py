"""Steady state of the untreated model: computed (never typed) for each man's parameters.

Drug compartments are empty at steady state; the physiology is found by integrating the untreated
model towards equilibrium (SciPy BDF on the generated NumPy right-hand side) and polishing with a
root finder. The same initial state feeds both engines.
"""

from __future__ import annotations

import warnings

import numpy as np

from hpgsim.engine.codegen import numpy_functions
from hpgsim.errors import SimulationError
from hpgsim.model.spec import ModelSpec

# A generic starting point (typical adult values); only used to start the search.
_START = {
    "gnrh_drive": 0.5,
    "gnrh_target_slow": 0.5,
    "gnrh_receptor_active": 1.0,
    "lh_pool": 40.0,
    "lh_serum": 5.0,
    "fsh_endogenous": 5.0,
    "leydig_activity": 0.8,
    "itt": 1000.0,
    "testosterone": 17.0,
    "estradiol_serum": 95.0,
    "shbg_serum": 33.0,
    "inhibin_b_serum": 170.0,
    "testis_maturation": 0.9,
    "gnrh_priming": 0.127,
    "leydig_induction": 0.4,
    "leydig_adaptation": 0.2,
    "leydig_adaptation_1": 0.2,
    "leydig_receptor": 0.9,
}


# Largest scaled residual (per hour) accepted for a quasi-steady state after the 40-year fallback.
QUASI_STEADY_TOL = 1e-7


def start_vector(spec: ModelSpec) -> np.ndarray:
    """The generic starting point of the steady-state search, shape (n_states,)."""
    return np.array([_START.get(n, 0.0) for n in spec.state_names], dtype=float)


def steady_state(spec: ModelSpec, params: np.ndarray, patient: str = "patient", tol: float = 1e-9) -> np.ndarray:
    """The untreated steady state for one parameter vector.

    Args:
        spec: the model.
        params: shape (n_params,), parameter values in the spec's order.
        patient: label for error messages.
        tol: tolerance on the scaled residual max|f(y)| / max(|y|, 1) per hour.

    Returns:
        State vector, shape (n_states,), with drug compartments at zero.

    Raises:
        SimulationError: no steady state was found (e.g. parameters far outside physiology).
    """
    from scipy.optimize import root  # imported on first use: keeps `import hpgsim` light

    fns = numpy_functions(spec)
    names = spec.state_names
    phys = np.array([s.owner == "physiology" for s in spec.states])
    y_start = start_vector(spec)
    p = np.asarray(params, dtype=float)

    def f_full(t: float, y: np.ndarray) -> np.ndarray:
        return np.asarray(fns.rhs(t, y, p), dtype=float)

    def f_phys(x: np.ndarray) -> np.ndarray:
        full = np.zeros(len(names))
        full[phys] = x
        return f_full(0.0, full)[phys]

    def polish(x0: np.ndarray, limit: float = tol) -> tuple[np.ndarray, float]:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            res = root(f_phys, x0, method="hybr", options={"xtol": 1e-13})

            def scaled(z: np.ndarray) -> float:
                r = float(np.max(np.abs(f_phys(z)) / np.maximum(np.abs(z), 1.0)))
                return r if np.isfinite(r) else np.inf

            # hybr can stop with "not making good progress" at a point whose residual is already at
            # rounding level (a slowly regressing testis after the 40-year fallback): judge the point,
            # not the flag, and keep whichever of the two is closer to equilibrium.
            r_start, r_root = scaled(x0), scaled(res.x) if np.all(np.isfinite(res.x)) else np.inf
            x, resid = (res.x, r_root) if r_root < r_start else (x0, r_start)
        ok = np.all(np.isfinite(x)) and resid <= limit and not np.any(x < -1e-9)
        return x, (resid if ok else np.inf)

    # Fast path: Newton-type root search from typical adult values (the untreated axis has one
    # equilibrium). If it fails, integrate 40 years untreated (the slowest time constants, testicular
    # maturation and regression, are about a year, so this lands on the equilibrium from any
    # physiological start; BDF makes the long horizon cheap) and polish from there.
    y = y_start.copy()
    x, resid = polish(y_start[phys])
    if not np.isfinite(resid):
        from scipy.integrate import solve_ivp  # imported here: the fallback is rarely needed

        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                # transient overflow inside the search is harmless: the residual is checked below
                warnings.simplefilter("ignore", RuntimeWarning)
                sol = solve_ivp(f_full, (0.0, 40 * 8760.0), y_start, method="BDF", rtol=1e-8, atol=1e-10)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            raise SimulationError(
                f"{patient}: no untreated steady state: the model diverged ({exc}); the parameters may be outside physiology."
            ) from exc
        if not sol.success:
            raise SimulationError(f"{patient}: could not reach the untreated steady state ({sol.message}).")
        y = sol.y[:, -1].copy()
        y[~phys] = 0.0
        # A man whose germ-cell support sits at the threshold between maturation and regression of the
        # testis approaches his equilibrium over decades (critical slowing: the Jacobian is nearly singular
        # there), and the root finder stalls a hair from it (tests/data/threshold_man.yaml). After 40
        # simulated years such a point is accepted if its remaining drift is below QUASI_STEADY_TOL per hour
        # (0.09% of a unit-scale state per year), negligible over any protocol.
        x, resid = polish(y[phys], limit=max(tol, QUASI_STEADY_TOL))
    y[phys] = x
    y[~phys] = 0.0
    if not np.all(np.isfinite(y)) or not np.isfinite(resid) or np.any(y[phys] < -1e-9):
        raise SimulationError(
            f"{patient}: no untreated steady state found (scaled residual {resid:.2e}); the parameters may be outside physiology."
        )
    return y
