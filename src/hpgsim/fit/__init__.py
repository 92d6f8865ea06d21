"""Personal fit (docs/fit.md): one man's labs -> posterior over his parameters -> predicted course.

Import-light: numpyro, JAX and plotting load when :func:`fit` or :func:`predict` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpgsim.fit.api import FitResult, Prediction
    from hpgsim.fit.labs import Labs


def fit(
    labs: Labs | str | Path | dict[str, Any],
    out: str | Path | None = None,
    *,
    fast: bool = False,
    seed: int = 0,
    num_warmup: int = 200,
    num_samples: int = 200,
    num_chains: int = 2,
) -> FitResult:
    """Fit one man's parameters to his labs: Bayesian, with his phenotype as the prior.

    Args:
        labs: a labs YAML file, a mapping in the same format (docs/fit.md), or a Labs.
        out: folder to write fit.json, draws.parquet and the posterior predictive (table and plot) to.
        fast: MAP + Laplace approximation instead of NUTS.
        seed: random seed; the same seed gives the same draws.
        num_warmup, num_samples, num_chains: NUTS settings.

    Returns:
        :class:`hpgsim.fit.api.FitResult` (summary dict as in fit.json, draws, posterior predictive).

    Raises:
        FitError: bad labs (file, key, value, fix), visits during treatment, failed inference.
    """
    from hpgsim.fit.api import fit as _fit

    return _fit(labs, out, fast=fast, seed=seed, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains)


def predict(
    fit: FitResult | str | Path,
    protocol: Any,
    out: str | Path | None = None,
    *,
    n_draws: int = 100,
    targets: list[str] | tuple[str, ...] | None = None,
    seed: int = 0,
    processes: int = 2,
    output_step_h: float = 24.0,
) -> Prediction:
    """Predict a fitted man's course under a protocol: 50%/90% bands and probabilities of targets.

    Args:
        fit: a FitResult or a folder written by :func:`fit`.
        protocol: a protocol file, mapping or Protocol.
        out: folder to write prediction.json, bands.csv and fan.png to.
        n_draws: posterior draws simulated with the CPU engine.
        targets: e.g. ``["sperm_concentration>=15@120d", "estradiol<10@any"]``.
        seed: random seed.
        processes: worker processes.
        output_step_h: output spacing in hours.

    Returns:
        :class:`hpgsim.fit.api.Prediction`.
    """
    from hpgsim.fit.api import predict as _predict

    return _predict(
        fit, protocol, out, n_draws=n_draws, targets=targets, seed=seed, processes=processes, output_step_h=output_step_h
    )
