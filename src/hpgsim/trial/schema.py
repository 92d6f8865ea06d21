"""Trial files (docs/trials.md): schema, loading and validation.

A trial file names a population, arms (each a protocol, one of them the no-treatment or placebo
control), the number of virtual men per arm, a seed, endpoints, responder rules and subgroups.
pydantic checks the structure; :func:`validate_trial` checks the meaning (phenotypes, quantities,
units, days, protocols) and returns a :class:`Trial` whose numbers are in canonical units. Every
error is a :class:`~hpgsim.errors.SpecError` naming the file, the key, the value and the fix.
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hpgsim.errors import HpgsimError, SpecError, UnitError
from hpgsim.population.covariates import CovariateDistribution
from hpgsim.population.phenotypes import get_phenotype, phenotype_names
from hpgsim.protocol.schema import Protocol, accept, load_protocol, validate_protocol
from hpgsim.units import CANONICAL, canonical_unit, to_canonical, to_hours
from hpgsim.yamlfile import read_yaml_file

MAX_MEN_PER_ARM = 100_000
COVARIATES = ("age", "bmi")  # per-man covariates usable in filters and subgroups (years, kg/m2)
Statistic = Literal["mean", "median", "mean_change", "percent_change", "proportion_above", "proportion_below"]
Of = Literal["level", "change", "percent_change"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FilterFile(_Model):
    """A day-0 inclusion filter (study-file semantics: min and max are inclusive, in `unit`)."""

    quantity: str
    unit: str | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _check(self) -> FilterFile:
        if self.min is None and self.max is None:
            raise ValueError("give 'min' or 'max' (or both)")
        return self


class PopulationFile(_Model):
    description: str | None = None
    phenotype: str | dict[str, float]
    age_years: CovariateDistribution | None = None
    bmi_kg_m2: CovariateDistribution | None = None
    inclusion: list[FilterFile] = []


class ArmFile(_Model):
    name: str
    protocol: str | dict[str, Any]
    control: bool = False


class EndpointFile(_Model):
    quantity: str
    day: float
    statistic: Statistic
    unit: str | None = None
    threshold: float | None = None
    label: str | None = None

    @model_validator(mode="after")
    def _check(self) -> EndpointFile:
        if self.statistic.startswith("proportion") and self.threshold is None:
            raise ValueError(f"statistic {self.statistic} needs 'threshold' (in 'unit')")
        if not self.statistic.startswith("proportion") and self.threshold is not None:
            raise ValueError(f"'threshold' is only for proportion_above / proportion_below, not {self.statistic}")
        return self


class CriterionFile(_Model):
    """One condition of a responder rule: the man's lab at `day` (or its change from day 0) vs a bound."""

    quantity: str
    day: float
    of: Of = "level"
    unit: str | None = None
    min: float | None = None  # >=
    max: float | None = None  # <=
    above: float | None = None  # >
    below: float | None = None  # <

    @model_validator(mode="after")
    def _check(self) -> CriterionFile:
        if all(getattr(self, k) is None for k in ("min", "max", "above", "below")):
            raise ValueError("give at least one bound: min (>=), max (<=), above (>) or below (<)")
        return self


class ResponderFile(_Model):
    name: str
    all: list[CriterionFile] | None = None
    any: list[CriterionFile] | None = None
    safety: bool = False

    @model_validator(mode="after")
    def _check(self) -> ResponderFile:
        if (self.all is None) == (self.any is None) or not (self.all or self.any):
            raise ValueError("give exactly one non-empty list: 'all' (every condition) or 'any' (at least one)")
        return self


class SubgroupFile(_Model):
    name: str
    quantity: str
    cuts: list[float]
    unit: str | None = None

    @model_validator(mode="after")
    def _check(self) -> SubgroupFile:
        if not self.cuts or sorted(self.cuts) != self.cuts or len(set(self.cuts)) != len(self.cuts):
            raise ValueError("'cuts' must be a non-empty list of increasing numbers, e.g. [10] or [25, 30]")
        return self


class TrialFile(_Model):
    name: str
    description: str | None = None
    seed: int = Field(0, ge=0)
    n_per_arm: int
    output_step: str | float = "1 day"
    lab_hour: float = 8.0
    bootstrap: int = 1000
    population: PopulationFile
    arms: list[ArmFile]
    endpoints: list[EndpointFile]
    responders: list[ResponderFile] = []
    subgroups: list[SubgroupFile] = []


@dataclass(frozen=True)
class Filter:
    """A validated day-0 filter in canonical units (covariates: years, kg/m2)."""

    quantity: str
    min: float | None
    max: float | None
    text: str


@dataclass(frozen=True)
class Endpoint:
    quantity: str
    day: float
    statistic: str
    unit: str  # the unit results are reported in
    per_unit: float  # canonical value of one `unit`
    threshold: float | None  # in `unit`
    label: str


@dataclass(frozen=True)
class Criterion:
    quantity: str
    day: float
    of: str
    per_unit: float
    min: float | None
    max: float | None
    above: float | None
    below: float | None
    text: str


@dataclass(frozen=True)
class Responder:
    name: str
    criteria: tuple[Criterion, ...]
    require_all: bool
    safety: bool

    @property
    def slug(self) -> str:
        return "responder_" + re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_")


@dataclass(frozen=True)
class Subgroup:
    name: str
    quantity: str
    cuts: tuple[float, ...]  # in `unit`
    unit: str
    per_unit: float

    def labels(self) -> list[str]:
        u = "" if self.unit in ("", "1") else f" {self.unit}"
        c = self.cuts
        out = [f"< {c[0]:g}{u}"]
        out += [f"{a:g} to < {b:g}{u}" for a, b in itertools.pairwise(c)]
        out.append(f">= {c[-1]:g}{u}")
        return out


@dataclass(frozen=True)
class Arm:
    name: str
    protocol: Protocol
    control: bool


@dataclass(frozen=True)
class Trial:
    """A validated trial design."""

    source: str
    name: str
    description: str
    seed: int
    n_per_arm: int
    output_step_h: float
    lab_hour: float
    bootstrap: int
    phenotypes: dict[str, float]  # name -> fraction (sums to 1)
    age: CovariateDistribution | None
    bmi: CovariateDistribution | None
    inclusion: tuple[Filter, ...]
    arms: tuple[Arm, ...]
    endpoints: tuple[Endpoint, ...]
    responders: tuple[Responder, ...]
    subgroups: tuple[Subgroup, ...]
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def control(self) -> Arm:
        return next(a for a in self.arms if a.control)

    def with_overrides(self, n: int | None = None, seed: int | None = None) -> Trial:
        """The same design with another n per arm and/or seed (CLI --n, --seed)."""
        from dataclasses import replace

        if n is not None and not (1 <= n <= MAX_MEN_PER_ARM):
            raise SpecError(f"--n {n}: must be between 1 and {MAX_MEN_PER_ARM} men per arm.")
        if seed is not None and seed < 0:
            raise SpecError(f"--seed {seed}: must be a non-negative integer; use e.g. --seed 0.")
        return replace(self, n_per_arm=self.n_per_arm if n is None else n, seed=self.seed if seed is None else seed)


def _fmt_loc(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    parts: list[str] = []
    for x in loc:
        if isinstance(x, int):
            parts[-1] = f"{parts[-1]}[{x}]" if parts else f"[{x}]"
        else:
            parts.append(str(x))
    return ".".join(parts)


def _format_pydantic(exc: ValidationError, source: str, raw: dict[str, Any]) -> str:
    msgs = []
    for err in exc.errors():
        loc = _fmt_loc(tuple(x for x in err["loc"] if x not in ("str", "dict[str,float]", "dict[str,any]")), raw)
        if err["type"] == "extra_forbidden":
            msgs.append(f"unknown key '{loc}' (value {err.get('input')!r}); remove it or check its spelling")
        elif err["type"] == "missing":
            msgs.append(f"missing required key '{loc}'")
        else:
            msgs.append(f"key '{loc}': {err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r})")
    return f"{source}: invalid trial file: " + "; ".join(dict.fromkeys(msgs)) + ". See docs/trials.md."


def _quantities() -> list[str]:
    from hpgsim.model.spec import load_model

    return list(load_model().observable_names)


def _check_quantity(q: str, where: str, covariates: bool = False) -> None:
    allowed = _quantities() + (list(COVARIATES) if covariates else [])
    if q not in allowed:
        close = difflib.get_close_matches(q, allowed, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SpecError(
            f"{where}: unknown quantity {q!r}.{hint} Use a canonical name (DESIGN.md section 2)"
            + (", or 'age' / 'bmi'" if covariates else "")
            + f", e.g. {', '.join(list(CANONICAL)[:6])}."
        )


def _per_unit(q: str, unit: str | None, where: str) -> tuple[str, float]:
    """(reporting unit, canonical value of one of it); covariates carry their own fixed units."""
    if q in COVARIATES:
        own = "y" if q == "age" else "kg/m2"
        if unit not in (None, own):
            raise SpecError(f"{where}: {q} is given in {own}; remove 'unit' or write unit: {own}.")
        return own, 1.0
    canon = canonical_unit(q)
    if unit is None:
        return canon, 1.0
    try:
        return unit, to_canonical(q, 1.0, unit)
    except UnitError as exc:
        raise SpecError(f"{where}, key 'unit': {exc} Write a unit that converts to {canon}, or leave 'unit' out.") from exc


def _protocol(spec: str | dict[str, Any], base: Path | None, where: str) -> Protocol:
    try:
        if isinstance(spec, str):
            p = Path(spec)
            if not p.is_absolute() and base is not None:
                p = base / p
            return load_protocol(p)
        return validate_protocol(spec, source=where)
    except HpgsimError as exc:
        raise SpecError(f"{where}: {exc}") from exc


def validate_trial(raw: Any, source: str = "trial", base_dir: str | Path | None = None) -> Trial:
    """Validate a trial mapping (as read from YAML).

    Args:
        raw: the parsed YAML (a mapping).
        source: the file name (or label) used in error messages.
        base_dir: folder that protocol paths are relative to (the trial file's folder).

    Raises:
        SpecError: with the file, key, value and fix.
    """
    if not isinstance(raw, dict):
        raise SpecError(
            f"{source}: a trial file is a mapping with name, n_per_arm, population, arms and endpoints "
            f"(got {type(raw).__name__}). See docs/trials.md."
        )
    try:
        tf = TrialFile.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_format_pydantic(exc, source, raw)) from exc
    base = Path(base_dir) if base_dir is not None else None

    if not (1 <= tf.n_per_arm <= MAX_MEN_PER_ARM):
        raise SpecError(f"{source}, key 'n_per_arm': {tf.n_per_arm} must be between 1 and {MAX_MEN_PER_ARM}.")
    if not (0 <= tf.lab_hour <= 24):
        raise SpecError(f"{source}, key 'lab_hour': {tf.lab_hour} must be a clock hour between 0 and 24 (e.g. 8 for 08:00).")
    if not (100 <= tf.bootstrap <= 100_000):
        raise SpecError(f"{source}, key 'bootstrap': {tf.bootstrap} resamples; use between 100 and 100000 (default 1000).")
    try:
        step_h = to_hours(tf.output_step, field=f"{source}, key 'output_step'")
    except UnitError as exc:
        raise SpecError(f"{exc} Write e.g. '1 day' or '12 h'.") from exc
    if not (0.25 <= step_h <= 24 * 7):
        raise SpecError(f"{source}, key 'output_step': {tf.output_step!r} must be between 15 min and 1 week (default 1 day).")

    # population
    ph_raw = tf.population.phenotype
    mix = {ph_raw: 1.0} if isinstance(ph_raw, str) else dict(ph_raw)
    for name, frac in mix.items():
        if name not in phenotype_names():
            close = difflib.get_close_matches(name, phenotype_names(), n=1, cutoff=0.4)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise SpecError(
                f"{source}, key 'population.phenotype': unknown phenotype {name!r}.{hint} "
                f"Use one of {', '.join(phenotype_names())} (see `hpgsim phenotypes`)."
            )
        if not frac > 0:
            raise SpecError(f"{source}, key 'population.phenotype.{name}': fraction {frac!r} must be greater than zero.")
    total = sum(mix.values())
    mix = {k: v / total for k, v in mix.items()}
    filters = []
    for i, f in enumerate(tf.population.inclusion):
        where = f"{source}, key 'population.inclusion[{i}]'"
        _check_quantity(f.quantity, where, covariates=True)
        unit, per = _per_unit(f.quantity, f.unit, where)
        lo = None if f.min is None else f.min * per
        hi = None if f.max is None else f.max * per
        bounds = [f"{op} {v:g}" for op, v in ((">=", f.min), ("<=", f.max)) if v is not None]
        text = f"{f.quantity} {' and '.join(bounds)} {unit}"
        filters.append(Filter(f.quantity, lo, hi, text))

    # arms
    if len(tf.arms) < 2:
        raise SpecError(f"{source}, key 'arms': a trial needs at least two arms, one of them the control (control: true).")
    names = [a.name for a in tf.arms]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise SpecError(f"{source}, key 'arms': arm names must be unique; repeated: {sorted(dup)}.")
    controls = [a.name for a in tf.arms if a.control]
    if len(controls) != 1:
        raise SpecError(
            f"{source}, key 'arms': exactly one arm must be the control (control: true), got {len(controls)}"
            f"{' (' + ', '.join(controls) + ')' if controls else ''}. Mark the no-treatment or placebo arm with control: true."
        )
    arms = tuple(
        Arm(a.name, _protocol(a.protocol, base, f"{source}, arm '{a.name}', key 'protocol'"), a.control) for a in tf.arms
    )
    horizon = min(a.protocol.duration_days for a in arms)

    def check_day(day: float, where: str) -> None:
        if not (0 <= day <= horizon + 1e-9):
            raise SpecError(
                f"{where}, key 'day': {day:g} is outside the trial; days run from 0 (baseline) to {horizon:g} "
                "(the shortest arm's duration). Choose a day in that range or lengthen the protocols."
            )

    endpoints = []
    for i, e in enumerate(tf.endpoints):
        where = f"{source}, key 'endpoints[{i}]'"
        _check_quantity(e.quantity, where)
        check_day(e.day, where)
        unit, per = _per_unit(e.quantity, e.unit, where)
        if e.statistic in ("mean_change", "percent_change") and e.day == 0:
            raise SpecError(f"{where}, key 'day': a change from baseline needs a day after 0, got 0.")
        default = f"{e.quantity} {e.statistic.replace('_', ' ')}" + (
            f" {e.threshold:g} {unit}" if e.threshold is not None else ""
        )
        endpoints.append(Endpoint(e.quantity, e.day, e.statistic, unit, per, e.threshold, e.label or f"{default}, day {e.day:g}"))
    if not endpoints:
        raise SpecError(f"{source}, key 'endpoints': give at least one endpoint (quantity, day, statistic).")

    responders = []
    rnames = [r.name for r in tf.responders]
    if len(set(rnames)) != len(rnames):
        raise SpecError(f"{source}, key 'responders': responder names must be unique.")
    for i, r in enumerate(tf.responders):
        crits = []
        conds = r.all if r.all is not None else r.any
        assert conds is not None
        for j, c in enumerate(conds):
            where = f"{source}, key 'responders[{i}].{'all' if r.all is not None else 'any'}[{j}]'"
            _check_quantity(c.quantity, where)
            check_day(c.day, where)
            if c.of != "level" and c.day == 0:
                raise SpecError(f"{where}, key 'day': a change from baseline needs a day after 0, got 0.")
            unit, per = _per_unit(c.quantity, c.unit, where)
            if c.of == "percent_change":
                if c.unit is not None:
                    raise SpecError(f"{where}, key 'unit': a percent change has no unit; remove 'unit'.")
                unit, per = "%", 1.0
            bounds = [f"{op} {v:g}" for op, v in ((">=", c.min), ("<=", c.max), (">", c.above), ("<", c.below)) if v is not None]
            what = {"level": "", "change": "change in ", "percent_change": "% change in "}[c.of]
            text = f"{what}{c.quantity} {' and '.join(bounds)} {unit} on day {c.day:g}".replace(" % on", "% on")
            crits.append(Criterion(c.quantity, c.day, c.of, per, c.min, c.max, c.above, c.below, text))
        responders.append(Responder(r.name, tuple(crits), r.all is not None, r.safety))

    subgroups = []
    for i, s in enumerate(tf.subgroups):
        where = f"{source}, key 'subgroups[{i}]'"
        _check_quantity(s.quantity, where, covariates=True)
        unit, per = _per_unit(s.quantity, s.unit, where)
        subgroups.append(Subgroup(s.name, s.quantity, tuple(s.cuts), unit, per))

    return Trial(
        source=source,
        name=tf.name,
        description=tf.description or "",
        seed=tf.seed,
        n_per_arm=tf.n_per_arm,
        output_step_h=step_h,
        lab_hour=tf.lab_hour,
        bootstrap=tf.bootstrap,
        phenotypes=mix,
        age=tf.population.age_years,
        bmi=tf.population.bmi_kg_m2,
        inclusion=tuple(filters),
        arms=arms,
        endpoints=tuple(endpoints),
        responders=tuple(responders),
        subgroups=tuple(subgroups),
        raw=dict(raw),
    )


def load_trial(path: str | Path) -> Trial:
    """Read and validate a trial YAML file (protocol paths are relative to the file's folder)."""
    p = Path(path)
    raw = read_yaml_file(p, "trial", SpecError)
    return validate_trial(raw, source=str(p), base_dir=p.parent)


def as_trial(trial: Trial | str | Path | dict[str, Any]) -> Trial:
    """Accept a Trial, a trial-file path or a mapping (protocol paths relative to the working directory)."""
    return accept(
        trial,
        Trial,
        load_trial,
        lambda raw: validate_trial(raw, source="trial"),
        SpecError,
        "trial: expected a file path, a mapping or a Trial",
    )


def phenotype_statuses(trial: Trial) -> dict[str, str]:
    return {name: get_phenotype(name).status for name in trial.phenotypes}
