"""Virtual trials (docs/trials.md): a trial file -> arms of virtual men -> endpoints, responders, subgroups.

Import-light: the heavy modules (engine, plotting) load when :func:`trial` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpgsim.trial.run import TrialResult
    from hpgsim.trial.schema import Trial


def trial(
    trial: Trial | str | Path | dict[str, Any],
    out: str | Path | None = None,
    processes: int = 2,
    n: int | None = None,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    scheduler: str = "local",
) -> TrialResult:
    """Run a virtual trial.

    Args:
        trial: a trial YAML file (protocol paths relative to it), a mapping in the same format
            (protocol paths relative to the working directory), or a validated Trial.
        out: folder to write the outputs to (tables, results.parquet, plots, report.html, summary.json);
            written atomically, nothing on failure. None writes nothing.
        processes: worker processes for the simulations.
        n: men per arm, overriding the file's n_per_arm.
        seed: overriding the file's seed (same seed, same results).
        progress: callback `(men simulated, men in total)`.
        scheduler: "local" (default; `processes` workers), "processes:N" (a Dask LocalCluster) or
            "tcp://host:port" (an existing Dask cluster); see docs/distributed.md.

    Returns:
        A :class:`~hpgsim.trial.run.TrialResult` with DataFrames `endpoints`, `responders`, `subgroups`,
        `per_man`, `bands`, `published`, and `flags` and `summary`.

    Raises:
        SpecError: an invalid trial file (file, key, value and fix in the message).
    """
    from hpgsim.trial.run import run_trial

    return run_trial(trial, out=out, processes=processes, progress=progress, n=n, seed=seed, scheduler=scheduler)


__all__ = ["trial"]
