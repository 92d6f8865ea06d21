"""Published-study files (data/studies/SCHEMA.md): loading and validation.

The package carries a copy of the study set (``hpgsim/data/studies``) so that validation works
anywhere; a test checks the copy against the project's shared data. Errors name the file, the arm and
the observation, the offending value and the fix.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from hpgsim.errors import HpgsimError, SpecError, UnitError
from hpgsim.population.covariates import CovariateDistribution
from hpgsim.protocol.schema import Protocol, validate_protocol
from hpgsim.units import to_canonical
from hpgsim.yamlfile import read_yaml_file

# The phenotype names fixed by DESIGN.md section 4 (a study may name one not yet implemented).
DESIGN_PHENOTYPES = [
    "healthy",
    "subfertile",
    "subfertile_low_te",
    "obese_hypogonadism",
    "secondary_hypogonadism",
    "hypogonadotropic_hypogonadism",
    "primary_hypogonadism",
]

Stat = Literal[
    "mean",
    "median",
    "geometric_mean",
    "percent_change",
    "fold_change",
    "proportion_below",
    "proportion_above",
    "median_time_to",
    "cumulative_below",
    "cumulative_above",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filter(_Model):
    quantity: str
    unit: str | None = None
    min: float | None = None
    max: float | None = None


class Among(_Model):
    quantity: str
    unit: str | None = None
    day: float
    below: float | None = None
    above: float | None = None


class Observation(_Model):
    """One published number (SCHEMA.md, observation fields)."""

    quantity: str
    unit: str | None = None
    day: float | None = None
    stat: Stat
    value: float
    sd: float | None = None
    se: float | None = None
    ci95: tuple[float, float] | None = None
    iqr: tuple[float, float] | None = None
    range: tuple[float, float] | None = None
    n: int | None = None
    threshold: float | None = None
    below: float | None = None
    above: float | None = None
    from_day: float | None = None
    among: Among | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _fields_for_stat(self) -> Observation:
        s = self.stat
        if s in ("proportion_below", "proportion_above", "cumulative_below", "cumulative_above") and self.threshold is None:
            raise ValueError(f"stat {s} needs 'threshold'")
        if s == "median_time_to" and (self.below is None) == (self.above is None):
            raise ValueError("stat median_time_to needs exactly one of 'below' or 'above'")
        if s in ("median_time_to", "cumulative_below", "cumulative_above") and self.from_day is None:
            raise ValueError(f"stat {s} needs 'from_day'")
        if s != "median_time_to" and self.day is None:
            raise ValueError(f"stat {s} needs 'day'")
        spreads = [k for k in ("sd", "se", "ci95", "iqr", "range") if getattr(self, k) is not None]
        if len(spreads) > 1:
            raise ValueError(f"give at most one spread, got {spreads}")
        return self


class Arm(_Model):
    name: str
    n: int
    protocol: dict[str, Any]
    observations: list[Observation]


class Population(_Model):
    description: str
    phenotype: str
    age_years: CovariateDistribution | None = None
    bmi_kg_m2: CovariateDistribution | None = None
    inclusion: list[Filter] = []


class StudyFile(_Model):
    id: str
    citation: str
    url: str | None = None
    evidence: Literal["abstract", "full_text", "secondary"]
    population: Population
    arms: list[Arm]


@dataclass(frozen=True)
class Study:
    """A validated study: the file's content plus each arm's validated protocol."""

    source: str
    data: StudyFile
    protocols: tuple[Protocol, ...]

    @property
    def id(self) -> str:
        return self.data.id


def _where(err: Any, raw: dict[str, Any]) -> str:
    loc = list(err["loc"])
    parts = []
    if len(loc) >= 2 and loc[0] == "arms" and isinstance(loc[1], int):
        arms = raw.get("arms") or []
        name = arms[loc[1]].get("name", loc[1]) if loc[1] < len(arms) and isinstance(arms[loc[1]], dict) else loc[1]
        parts.append(f"arm '{name}'")
        loc = loc[2:]
        if len(loc) >= 2 and loc[0] == "observations" and isinstance(loc[1], int):
            parts.append(f"observation {loc[1] + 1}")
            loc = loc[2:]
    key = ".".join(str(x) for x in loc)
    if key:
        parts.append(f"key '{key}'")
    return ", ".join(parts)


def validate_study(raw: Any, source: str) -> Study:
    """Validate one study mapping (SCHEMA.md): structure, stats, units and each arm's protocol.

    Raises:
        SpecError: with the file, arm, observation, value and fix.
    """
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a study file is a mapping with id, citation, evidence, population and arms.")
    try:
        data = StudyFile.model_validate(raw)
    except ValidationError as exc:
        msgs = [f"{_where(e, raw)}: {e['msg'].removeprefix('Value error, ')} (got {e.get('input')!r})" for e in exc.errors()]
        raise SpecError(f"{source}: invalid study file: " + "; ".join(msgs) + ". See data/studies/SCHEMA.md.") from exc
    protocols = []
    ph = data.population.phenotype
    if ph not in DESIGN_PHENOTYPES:
        close = difflib.get_close_matches(ph, DESIGN_PHENOTYPES, n=1, cutoff=0.4)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SpecError(
            f"{source}, key 'population.phenotype': unknown phenotype {ph!r}.{hint} Use one of {', '.join(DESIGN_PHENOTYPES)}."
        )
    for arm in data.arms:
        try:
            protocols.append(validate_protocol(arm.protocol, source=f"{source}, arm '{arm.name}', protocol"))
        except HpgsimError as exc:
            raise SpecError(str(exc)) from exc
        for i, obs in enumerate(arm.observations):
            where = f"{source}, arm '{arm.name}', observation {i + 1} ({obs.quantity})"
            if obs.unit is not None:
                try:
                    to_canonical(obs.quantity, obs.value if obs.stat not in ("percent_change", "fold_change") else 1.0, obs.unit)
                except UnitError as exc:
                    raise SpecError(f"{where}: {exc}") from exc
    return Study(source=source, data=data, protocols=tuple(protocols))


def load_study(path: str | Path) -> Study:
    """Read and validate a study YAML file."""
    return validate_study(read_yaml_file(path, "study", SpecError), str(path))


def load_studies(paths: list[str | Path]) -> list[Study]:
    """Load study files and every ``*.yaml`` inside given folders, sorted by file name within a folder."""
    out: list[Study] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            files = sorted(p.glob("*.yaml"))
            if not files:
                raise SpecError(f"{p}: no study files (*.yaml) in this folder.")
            out.extend(load_study(f) for f in files)
        else:
            out.append(load_study(p))
    return out


def packaged_study_dir() -> Path:
    """The folder of the study files shipped with hpgsim."""
    return Path(str(resources.files("hpgsim.data").joinpath("studies")))
