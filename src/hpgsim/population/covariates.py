"""How a study or trial describes its men's age and BMI, and how virtual men's values are drawn from it.

Study files (data/studies/SCHEMA.md) and trial files (docs/trials.md) share this form, so that what papers
publish can be written as published: a centre (mean or median) with a spread (sd or iqr), limits (min,
max, or the published range), or only limits (a uniform draw between them).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

_NORMAL_IQR_PER_SD = 1.349  # interquartile range of a normal distribution, in sd
_RANGE_PER_SD = 4.0  # a published range taken as about +/- 2 sd
_RANGE_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:-|–|to)\s*(\d+(?:\.\d+)?)\s*$")


class CovariateDistribution(BaseModel):
    """A covariate's distribution in a population of men.

    Forms: `{mean: 68, sd: 5}`; `{median: 36, iqr: [30, 44], range: [22, 70]}`; `{mean: 32, sd: 4, min: 25}`
    (truncated normal); `{min: 62, max: 74}` or `{range: [62, 74]}` (uniform).
    """

    model_config = ConfigDict(extra="forbid")

    mean: float | None = None
    median: float | None = None
    sd: float | None = None
    iqr: tuple[float, float] | None = None
    range: tuple[float, float] | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _published_shorthand(cls, data: Any) -> Any:
        """A bare number is the mean (`age_years: 45`); a text range "40-60" or "40 to 60" the limits."""
        if isinstance(data, bool):
            return data
        if isinstance(data, (int, float)):
            return {"mean": data}
        if isinstance(data, str):
            m = _RANGE_TEXT.match(data)
            if m:
                return {"range": [float(m.group(1)), float(m.group(2))]}
        return data

    @model_validator(mode="after")
    def _check(self) -> CovariateDistribution:
        if self.mean is not None and self.median is not None:
            raise ValueError("give one centre, 'mean' or 'median', not both")
        if self.sd is not None and self.iqr is not None:
            raise ValueError("give at most one spread: 'sd' or 'iqr' (a 'range' may come with either)")
        if self.sd is not None and self.sd < 0:
            raise ValueError(f"'sd' must be zero or more, got {self.sd}")
        for name in ("iqr", "range"):
            pair = getattr(self, name)
            if pair is not None and pair[0] > pair[1]:
                raise ValueError(f"'{name}' must be [low, high], got {list(pair)}")
        lo, hi = self.bounds
        if self.min is not None and self.max is not None and self.max <= self.min:
            raise ValueError("'max' must be greater than 'min'")
        if lo > hi:
            raise ValueError(f"the limits are empty: the low limit {lo} is above the high limit {hi}")
        if self.centre is None:
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ValueError(
                    "give 'mean' or 'median' (with optional 'sd' or 'iqr', and limits 'min'/'max'/'range'), "
                    "or both limits ('min' and 'max', or 'range') for a uniform draw"
                )
        elif not lo <= self.centre <= hi:
            raise ValueError(f"the centre {self.centre:g} lies outside the limits [{lo:g}, {hi:g}]")
        return self

    @property
    def centre(self) -> float | None:
        """The mean, or the median where only that was published; None for a uniform draw."""
        c = self.mean if self.mean is not None else self.median
        return None if c is None else float(c)

    @property
    def typical(self) -> float:
        """The value a single typical man gets: the centre, or the middle of the limits for a uniform draw."""
        if self.centre is not None:
            return self.centre
        lo, hi = self.bounds
        return (lo + hi) / 2.0

    @property
    def spread(self) -> float:
        """Standard deviation of the normal draw: sd; else iqr / 1.349; else range / 4; else 0."""
        if self.sd is not None:
            return float(self.sd)
        if self.iqr is not None:
            return float(self.iqr[1] - self.iqr[0]) / _NORMAL_IQR_PER_SD
        if self.range is not None:
            return float(self.range[1] - self.range[0]) / _RANGE_PER_SD
        return 0.0

    @property
    def bounds(self) -> tuple[float, float]:
        """The limits a drawn value keeps to: min/max and the published range, whichever is narrower."""
        lows = [x for x in (self.min, self.range[0] if self.range else None) if x is not None]
        highs = [x for x in (self.max, self.range[1] if self.range else None) if x is not None]
        return (max(lows) if lows else float("-inf")), (min(highs) if highs else float("inf"))

    def draw(self, rng: np.random.Generator, floor: float) -> float:
        """One man's value: normal(centre, spread) redrawn until inside the limits (the centre if 1000 tries
        fail), or uniform between the limits without a centre; never below `floor`.

        A distribution without limits takes exactly one normal draw.
        """
        lo, hi = self.bounds
        if self.centre is None:
            return max(floor, float(rng.uniform(lo, hi)))
        for _ in range(1000):
            v = float(rng.normal(self.centre, self.spread))
            if lo <= v <= hi:
                return max(floor, v)
        return max(floor, float(np.clip(self.centre, lo, hi)))
