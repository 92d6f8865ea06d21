"""Dose schedules and output grids: a validated protocol expanded into state increments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hpgsim.model.spec import ModelSpec

if TYPE_CHECKING:  # the engine itself needs no protocol parser (keeps GPU runs light)
    from hpgsim.protocol.schema import Protocol


@dataclass(frozen=True)
class DoseSchedule:
    """Instantaneous additions to states, sorted by time.

    Attributes:
        times_h: shape (n,), hours from day 0.
        state_index: shape (n,), index into the model's states.
        amounts: shape (n,), amount added, in the target state's unit (bioavailability applied).
    """

    times_h: np.ndarray
    state_index: np.ndarray
    amounts: np.ndarray

    @property
    def n(self) -> int:
        return int(self.times_h.size)


def build_schedule(spec: ModelSpec, protocol: Protocol) -> DoseSchedule:
    """Expand every regimen's administrations into dose events on the model's states."""
    index = {n: i for i, n in enumerate(spec.state_names)}
    times: list[float] = []
    states: list[int] = []
    amounts: list[float] = []
    for reg in protocol.regimens:
        for target in spec.drugs[reg.drug].routes[reg.route]:
            amount = reg.dose * target.amount_per_dose_unit * target.bioavailability
            for t in reg.times_h:
                times.append(t)
                states.append(index[target.state])
                amounts.append(amount)
    # Round to ~4 microseconds so that dose times built by repeated intervals coincide with output times.
    t_arr = np.round(np.asarray(times, dtype=float), 9)
    order = np.argsort(t_arr, kind="stable")
    return DoseSchedule(
        times_h=t_arr[order],
        state_index=np.asarray(states, dtype=np.int64)[order],
        amounts=np.asarray(amounts, dtype=float)[order],
    )


def output_grid(duration_h: float, step_h: float = 24.0) -> np.ndarray:
    """Output times from 0 to duration inclusive, every `step_h` hours (the end is always included)."""
    n = int(np.floor(duration_h / step_h + 1e-9))
    grid = np.arange(n + 1, dtype=float) * step_h
    if grid[-1] < duration_h - 1e-9:
        grid = np.append(grid, duration_h)
    return grid


def segment_grid(schedule: DoseSchedule, output_times_h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge dose and output times into one grid of segment boundaries.

    Returns:
        grid: shape (m,), sorted unique times (hours) covering outputs and doses.
        is_output: shape (m,), True where the grid time is an output time (state recorded before doses).
        dose_matrix_rows: shape (n_doses,), the grid index at which each dose is applied.
    """
    grid = np.unique(np.concatenate([output_times_h, schedule.times_h]))
    is_output = np.isin(grid, output_times_h)
    dose_rows = np.searchsorted(grid, schedule.times_h)
    return grid, is_output, dose_rows
