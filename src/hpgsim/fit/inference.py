"""Bayesian fit of one man's parameters to his steady-state labs (numpyro; JAX steady state).

Labs drawn off treatment sit at the untreated steady state, so the likelihood needs no ODE: the
steady state is a root of the model's right-hand side, found by Newton's method from the phenotype's
typical man and differentiated implicitly (``jax.lax.custom_root``), ~1-2 ms per evaluation with its
gradient. Parameters are sampled non-centred: ``theta_k = typical_k * exp(sigma_k * z_k)``,
``z ~ N(0, 1)`` (the phenotype's log-normal prior). Likelihood: log-normal within-person + assay noise
with the CVs of :mod:`hpgsim.observe.labs`, diurnal testosterone for the time of draw, and results
below an assay limit as left-censored.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from hpgsim.engine.codegen import numpy_functions
from hpgsim.engine.steady import steady_state
from hpgsim.errors import FitError, SimulationError
from hpgsim.fit.labs import FITTED_QUANTITIES, Labs
from hpgsim.model.spec import ModelSpec, load_model
from hpgsim.observe.labs import WITHIN_PERSON_CV, diurnal_factor
from hpgsim.population.phenotypes import get_phenotype

QUANTITIES: tuple[str, ...] = tuple(FITTED_QUANTITIES)
INFLUENCE_THRESHOLD = 0.02  # |d log(lab) / d z| below this for every lab: the labs say nothing about it
NEWTON_ITERATIONS = 30


@dataclass(frozen=True)
class Problem:
    """Everything the numpyro model needs, as arrays (built once per fit).

    Attributes:
        spec: the untreated model.
        base: parameter vector of the typical man with his age and BMI, shape (n_params,).
        fit_names: fitted parameter names; fit_index their positions in `base`.
        typical: prior medians of the fitted parameters, shape (k,).
        sigma: prior log-sd of the fitted parameters, shape (k,).
        x0: physiology states of the typical man at steady state (Newton's start), shape (n_phys,).
        obs_visit, obs_quantity: per observation, the visit index and the index into QUANTITIES.
        log_y: log observed value (or log limit for censored), shape (n_obs,).
        censored: shape (n_obs,).
        log_diurnal: log diurnal factor of each observation (0 except for testosterone), shape (n_obs,).
        obs_sigma: log-sd of the observation noise per observation, shape (n_obs,).
        free_names: parameters with a CV that the labs do not influence (posterior = prior).
    """

    spec: ModelSpec
    base: np.ndarray
    fit_names: tuple[str, ...]
    fit_index: np.ndarray
    typical: np.ndarray
    sigma: np.ndarray
    x0: np.ndarray
    obs_visit: np.ndarray
    obs_quantity: np.ndarray
    log_y: np.ndarray
    censored: np.ndarray
    log_diurnal: np.ndarray
    obs_sigma: np.ndarray
    free_names: tuple[str, ...]
    influence: dict[str, float]


def obs_sigma(quantity: str) -> float:
    """Log-sd of a lab's within-person + assay noise (sqrt(log(1 + cv^2)))."""
    return float(np.sqrt(np.log1p(WITHIN_PERSON_CV[quantity] ** 2)))


@lru_cache(maxsize=1)
def untreated_spec() -> ModelSpec:
    return load_model(frozenset())


def prior_of(phenotype: str, age: float, bmi: float) -> tuple[dict[str, float], dict[str, float]]:
    """The phenotype's typical values (with the man's age and BMI) and CVs of the untreated model's parameters."""
    ph = get_phenotype(phenotype)
    spec = untreated_spec()
    typical = {k: float(v) for k, v in ph.typical.items()}
    typical["age"], typical["bmi"] = float(age), float(bmi)
    cv = {k: float(v) for k, v in ph.cv.items() if k in spec.parameters and v > 0}
    return typical, cv


def influence(phenotype: str, age: float, bmi: float) -> dict[str, float]:
    """max over the fitted labs of |d log(lab) / d z_k| at the prior median (z in prior sd units).

    Central finite differences on the NumPy steady state; used to leave out parameters that no lab
    can see (their posterior is exactly their prior).
    """
    spec = untreated_spec()
    typical, cv = prior_of(phenotype, age, bmi)
    names = list(spec.parameters)
    base = np.array([typical.get(n, p.value) for n, p in spec.parameters.items()])
    qi = [spec.observable_names.index(q) for q in QUANTITIES]
    obs = numpy_functions(spec).observe

    def logs(p: np.ndarray) -> np.ndarray:
        y = steady_state(spec, p)
        return np.log(np.asarray(obs(y[:, None], p), dtype=float)[qi, 0])

    out: dict[str, float] = {}
    h = 0.05
    for k in sorted(cv):
        s = np.sqrt(np.log1p(cv[k] ** 2))
        i = names.index(k)
        pp, pm = base.copy(), base.copy()
        pp[i] *= np.exp(s * h)
        pm[i] *= np.exp(-s * h)
        out[k] = float(np.max(np.abs((logs(pp) - logs(pm)) / (2 * h))))
    return out


def build_problem(labs: Labs, steady_visits: list[int]) -> Problem:
    """Arrays for the numpyro model from the visits at steady state (indices into labs.visits)."""
    spec = untreated_spec()
    typical, cv = prior_of(labs.phenotype, labs.age, labs.bmi)
    try:
        infl = influence(labs.phenotype, labs.age, labs.bmi)
    except SimulationError as exc:
        raise FitError(
            f"{labs.source}: the prior's typical man has no steady state at age {labs.age:g}, BMI {labs.bmi:g}: {exc}"
        ) from exc
    fit_names = tuple(k for k in sorted(cv) if infl[k] >= INFLUENCE_THRESHOLD)
    free_names = tuple(k for k in sorted(cv) if infl[k] < INFLUENCE_THRESHOLD)
    names = list(spec.parameters)
    base = np.array([typical.get(n, p.value) for n, p in spec.parameters.items()])
    phys = np.array([s.owner == "physiology" for s in spec.states])
    x0 = steady_state(spec, base)[phys]
    ov, oq, ly, cen, ld, os_ = [], [], [], [], [], []
    for j, vi in enumerate(steady_visits):
        v = labs.visits[vi]
        for o in v.observations:
            ov.append(j)
            oq.append(QUANTITIES.index(o.quantity))
            ly.append(np.log(o.value))
            cen.append(o.censored)
            d = diurnal_factor(v.hour, labs.age) if o.quantity in ("total_testosterone", "free_testosterone") else 1.0
            ld.append(float(np.log(d)))
            os_.append(obs_sigma(o.quantity))
    return Problem(
        spec=spec,
        base=base,
        fit_names=fit_names,
        fit_index=np.array([names.index(k) for k in fit_names], dtype=int),
        typical=np.array([typical[k] for k in fit_names]),
        sigma=np.array([np.sqrt(np.log1p(cv[k] ** 2)) for k in fit_names]),
        x0=x0,
        obs_visit=np.array(ov, dtype=int),
        obs_quantity=np.array(oq, dtype=int),
        log_y=np.array(ly),
        censored=np.array(cen, dtype=bool),
        log_diurnal=np.array(ld),
        obs_sigma=np.array(os_),
        free_names=free_names,
        influence=infl,
    )


def model_data(problem: Problem) -> dict[str, np.ndarray]:
    """The per-man arrays, passed to the compiled functions as arguments (never baked in as constants),
    so that one compiled function serves every man with the same numbers of parameters and results
    (and JAX's persistent cache can reuse it across processes)."""
    return {
        "base": problem.base,
        "fit_index": problem.fit_index,
        "typical": problem.typical,
        "sigma": problem.sigma,
        "x0": problem.x0,
        "obs_quantity": problem.obs_quantity,
        "log_y": problem.log_y,
        "censored": problem.censored,
        "log_diurnal": problem.log_diurnal,
        "obs_sigma": problem.obs_sigma,
    }


@lru_cache(maxsize=2)
def steady_labs_fn(spec: ModelSpec) -> Any:
    """A JAX function (z (k,), data) -> (log labs at 08:00 (n_quantities,), scaled residual) at steady state.

    Newton's method on the physiology states from the typical man's steady state ``data["x0"]``
    (a step that would make a state negative is halved instead); the derivative comes from the
    implicit function theorem (``lax.custom_root``), not from unrolling the iterations.
    """
    import jax
    import jax.numpy as jnp

    from hpgsim.engine.codegen import compile_functions

    fns = compile_functions(spec, jnp)
    n = len(spec.state_names)
    idx = np.flatnonzero([s.owner == "physiology" for s in spec.states])  # NumPy: cached across traces
    qi = np.array([spec.observable_names.index(q) for q in QUANTITIES])

    def full(x: Any) -> Any:
        return jnp.zeros(n, dtype=x.dtype).at[idx].set(x)

    def labs(z: Any, data: dict[str, Any]) -> tuple[Any, Any]:
        p = data["base"].at[data["fit_index"]].set(data["typical"] * jnp.exp(data["sigma"] * z))

        def g(x: Any) -> Any:
            return fns.rhs(0.0, full(x), p)[idx]

        def solve(g: Any, x: Any) -> Any:
            # Newton until the step is tiny (at most NEWTON_ITERATIONS); a step that would make a state
            # negative is halved instead. Not differentiated: custom_root supplies the derivative.
            def body(c: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
                x, i, _ = c
                step = jnp.linalg.solve(jax.jacfwd(g)(x), g(x))
                xn = x - step
                xn = jnp.where(xn < 0, 0.5 * x, xn)
                return xn, i + 1, jnp.max(jnp.abs(xn - x) / jnp.maximum(jnp.abs(xn), 1e-6))

            def more(c: tuple[Any, Any, Any]) -> Any:
                return (c[1] < NEWTON_ITERATIONS) & (c[2] > 1e-11)

            return jax.lax.while_loop(more, body, (x, 0, jnp.inf))[0]

        def tangent_solve(g_lin: Any, y: Any) -> Any:
            return jnp.linalg.solve(jax.jacfwd(g_lin)(y), y)

        x = jax.lax.custom_root(g, data["x0"], solve, tangent_solve)
        xs = jax.lax.stop_gradient(x)
        resid = jnp.max(jnp.abs(g(xs)) / jnp.maximum(jnp.abs(xs), 1.0))
        y = fns.observe(full(x), p)[qi]
        return jnp.log(jnp.maximum(y, 1e-300)), resid

    return labs


def numpyro_model(data: dict[str, Any]) -> None:
    """The numpyro model: z ~ N(0, I_k); labs | z log-normal, left-censored below assay limits."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from jax.scipy.stats import norm

    labs_fn = steady_labs_fn(untreated_spec())
    k = data["typical"].shape[0]
    z = numpyro.sample("z", dist.Normal(jnp.zeros(k), 1.0).to_event(1))
    mu8, resid = labs_fn(z, data)
    mu = mu8[data["obs_quantity"]] + data["log_diurnal"]
    s = data["obs_sigma"]
    r = (data["log_y"] - mu) / s
    ll = jnp.where(data["censored"], norm.logcdf(r), norm.logpdf(r) - jnp.log(s))
    ok = (resid < 1e-6) & jnp.all(jnp.isfinite(mu8))
    numpyro.factor("labs", jnp.where(ok, jnp.sum(ll), -jnp.inf))


@dataclass(frozen=True)
class Samples:
    """Posterior draws of z, shape (n_chains, n_draws, k), and diagnostics."""

    z: np.ndarray
    method: str
    diagnostics: dict[str, Any]


def _as_jax(data: dict[str, np.ndarray]) -> dict[str, Any]:
    import jax.numpy as jnp

    return {k: jnp.asarray(v) for k, v in data.items()}


def run_nuts(problem: Problem, seed: int, num_warmup: int, num_samples: int, num_chains: int, dense_mass: bool = True) -> Samples:
    """NUTS with a dense mass matrix (chains one after the other: this machine has few cores).

    The labs pin down combinations of parameters (ridges): with a diagonal mass matrix NUTS took ~3x
    more leapfrog steps per draw, for similar time and a lower ESS (docs/fit.md), hence dense.
    """
    import jax
    from numpyro.diagnostics import summary
    from numpyro.infer import MCMC, NUTS, init_to_value

    k = len(problem.fit_names)
    kernel = NUTS(
        numpyro_model,
        target_accept_prob=0.9,
        init_strategy=init_to_value(values={"z": np.zeros(k)}),
        max_tree_depth=8,
        dense_mass=dense_mass,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="sequential",
        progress_bar=False,
        jit_model_args=True,
    )
    mcmc.run(jax.random.PRNGKey(seed), _as_jax(model_data(problem)), extra_fields=("diverging", "num_steps"))
    z = np.asarray(mcmc.get_samples(group_by_chain=True)["z"])
    extra = mcmc.get_extra_fields(group_by_chain=True)
    div = int(np.asarray(extra["diverging"]).sum())
    steps = np.asarray(extra["num_steps"])
    summ = summary({"z": z}, prob=0.9, group_by_chain=True)["z"]
    rhat = np.asarray(summ["r_hat"], dtype=float)
    ess = np.asarray(summ["n_eff"], dtype=float)
    diag = {
        "method": f"NUTS (numpyro, {'dense' if dense_mass else 'diagonal'} mass matrix)",
        "num_chains": num_chains,
        "num_warmup": num_warmup,
        "num_samples": num_samples,
        "divergences": div,
        "mean_leapfrog_steps": float(steps.mean()),
        "r_hat": {n: float(r) for n, r in zip(problem.fit_names, rhat, strict=True)},
        "ess": {n: float(e) for n, e in zip(problem.fit_names, ess, strict=True)},
        "max_r_hat": float(np.nanmax(rhat)),
        "min_ess": float(np.nanmin(ess)),
    }
    return Samples(z, "nuts", diag)


def run_laplace(problem: Problem, seed: int, num_samples: int) -> Samples:
    """Fast mode: MAP by BFGS on numpyro's potential, then a Laplace approximation at the mode.

    The Hessian is taken by central differences of the (implicit, exact) gradient: 2k gradient
    calls, no second-order compilation (numpyro's AutoLaplaceApproximation differentiates twice
    through the steady state, which compiled for minutes here).
    """
    from scipy.optimize import minimize

    k = len(problem.fit_names)
    data = _as_jax(model_data(problem))

    vg = _value_and_grad_fn()

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = vg(z, data)
        v = float(v)
        return (v, np.asarray(g, dtype=float)) if np.isfinite(v) else (1e12, np.zeros(k))

    res = minimize(fun, np.zeros(k), jac=True, method="BFGS", options={"gtol": 1e-6, "maxiter": 500})
    mode = np.asarray(res.x)
    h = 1e-4
    hess = np.zeros((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h
        hess[i] = (fun(mode + e)[1] - fun(mode - e)[1]) / (2 * h)
    hess = 0.5 * (hess + hess.T)
    try:
        chol = np.linalg.cholesky(np.linalg.inv(hess))
    except np.linalg.LinAlgError:
        raise FitError(
            "the Laplace approximation failed (the curvature at the mode is not positive); use NUTS (without --fast)."
        ) from None
    rng = np.random.default_rng(seed)
    z = mode + rng.standard_normal((num_samples, k)) @ chol.T
    diag = {
        "method": "MAP (BFGS) + Laplace approximation (finite-difference Hessian of the exact gradient)",
        "num_samples": num_samples,
        "converged": bool(res.success),
        "optimizer_message": str(res.message),
        "gradient_evaluations": int(res.nfev) + 2 * k,
        "neg_log_density_at_mode": float(res.fun),
        "note": "R-hat, ESS and divergences apply to NUTS only; a Laplace approximation ignores skew and multiple modes.",
    }
    return Samples(z[None, :, :], "laplace", diag)


def batch_labs(problem: Problem, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True 08:00 labs (canonical units, order QUANTITIES) for many z: shape (n, n_quantities), and ok (n,)."""
    import jax

    fn = _batch_fn()
    # only the arrays the steady state needs: the compiled function does not depend on his number of results
    data = {k: v for k, v in model_data(problem).items() if k in ("base", "fit_index", "typical", "sigma", "x0")}
    logs, resid = fn(np.asarray(z, dtype=float), _as_jax(data))
    logs, resid = np.asarray(logs), np.asarray(resid)
    ok = (resid < 1e-6) & np.all(np.isfinite(logs), axis=1)
    _ = jax
    return np.exp(logs), ok


@lru_cache(maxsize=1)
def _value_and_grad_fn() -> Any:
    """The jitted value and gradient of numpyro's potential (-log posterior) in z (compiled once per shape)."""
    import jax
    from numpyro.infer.util import potential_energy

    def vg(z: Any, data: dict[str, Any]) -> tuple[Any, Any]:
        return jax.value_and_grad(lambda zz: potential_energy(numpyro_model, (data,), {}, {"z": zz}))(z)

    return jax.jit(vg)


@lru_cache(maxsize=1)
def _batch_fn() -> Any:
    import jax

    return jax.jit(jax.vmap(steady_labs_fn(untreated_spec()), in_axes=(0, None)))
