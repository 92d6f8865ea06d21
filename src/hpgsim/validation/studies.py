"""Published-study files (data/studies/SCHEMA.md): loading and validation.

The package carries a copy of the study set (``hpgsim/data/studies``) so that validation works
anywhere; a test checks the copy against the project's shared data. Errors name the file, the arm and
the observation, the offending value and the fix.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from hpgsim.errors import HpgsimError, SpecError, UnitError
from hpgsim.population.covariates import CovariateDistribution
from hpgsim.protocol.schema import Protocol, validate_protocol
from hpgsim.units import canonical_unit, to_canonical
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

    @model_validator(mode="before")
    @classmethod
    def _sem_is_se(cls, data: Any) -> Any:
        """Papers write "mean +/- SEM": `sem` is read as `se`."""
        if isinstance(data, dict) and "sem" in data and "se" not in data:
            data = {("se" if k == "sem" else k): v for k, v in data.items()}
        return data

    @model_validator(mode="before")
    @classmethod
    def _side_is_threshold(cls, data: Any) -> Any:
        """`proportion_below` / `cumulative_below` with `below: X` (and the `_above` pair with `above: X`) and
        no `threshold`: X is the threshold (the way median_time_to names it)."""
        if isinstance(data, dict) and data.get("threshold") is None and isinstance(data.get("stat"), str):
            side = data["stat"].rpartition("_")[2]
            if data["stat"].startswith(("proportion_", "cumulative_")) and side in ("below", "above") and side in data:
                data = {("threshold" if k == side else k): v for k, v in data.items()}
        return data

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
class Omitted:
    """An observation of a study file that could not be simulated, with the reason (lenient loading).

    `arm` and `index` are its 0-based positions in the file; `row` holds the published fields that
    could be read (study, arm, quantity, unit, day, stat, observed), for a result row in file order.
    """

    arm: int
    index: int
    row: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Study:
    """A validated study: the file's content plus each arm's validated protocol.

    A study loaded leniently (:func:`load_studies_leniently`) may lack arms or observations that
    were invalid; `omitted` lists them and `shape` gives each arm's observation count in the file,
    so that :func:`in_file_order` can put result rows back in file order.
    """

    source: str
    data: StudyFile
    protocols: tuple[Protocol, ...]
    omitted: tuple[Omitted, ...] = ()
    shape: tuple[int, ...] = ()

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
    _check_phenotype(data.population.phenotype, source)
    for arm in data.arms:
        try:
            protocols.append(validate_protocol(arm.protocol, source=f"{source}, arm '{arm.name}', protocol"))
        except HpgsimError as exc:
            raise SpecError(str(exc)) from exc
        for i, obs in enumerate(arm.observations):
            why = _observation_problem(obs)
            if why is not None:
                raise SpecError(f"{source}, arm '{arm.name}', observation {i + 1} ({obs.quantity}): {why}")
    for i, f in enumerate(data.population.inclusion):
        why = _quantity_problem(f.quantity, f.unit)
        if why is not None:
            raise SpecError(f"{source}, key 'population.inclusion', filter {i + 1}: {why}")
    return Study(source=source, data=data, protocols=tuple(protocols))


def _check_phenotype(ph: str, source: str) -> None:
    """Raise SpecError, with the nearest name, for a phenotype DESIGN.md section 4 does not define."""
    if ph not in DESIGN_PHENOTYPES:
        close = difflib.get_close_matches(ph, DESIGN_PHENOTYPES, n=1, cutoff=0.4)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SpecError(
            f"{source}, key 'population.phenotype': unknown phenotype {ph!r}.{hint} Use one of {', '.join(DESIGN_PHENOTYPES)}."
        )


def _published(value: Any) -> Any:
    """A published field as JSON can hold it (what an invalid observation's row shows)."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _omitted_row(study_id: str, arm_name: str, raw_obs: Any) -> dict[str, Any]:
    o = raw_obs if isinstance(raw_obs, dict) else {}
    return {
        "study": study_id,
        "arm": arm_name,
        **{k: _published(o.get(k)) for k in ("quantity", "unit", "day", "stat")},
        "observed": _published(o.get("value")),
    }


def _kept(
    raw: dict[str, Any], bad_arms: dict[int, str], bad_obs: dict[tuple[int, int], str]
) -> tuple[dict[str, Any], list[tuple[int, list[int]]]]:
    """The study mapping without the bad arms and observations, and the kept positions (arm, [observations])."""
    trial = dict(raw)
    arms, positions = [], []
    for ai, arm in enumerate(raw["arms"]):
        if ai in bad_arms:
            continue
        obs = arm.get("observations") if isinstance(arm, dict) else None
        if isinstance(obs, list):
            keep = [oi for oi in range(len(obs)) if (ai, oi) not in bad_obs]
            arm = {**arm, "observations": [obs[oi] for oi in keep]}
        else:
            keep = []
        arms.append(arm)
        positions.append((ai, keep))
    trial["arms"] = arms
    return trial, positions


def _quantity_problem(quantity: str, unit: str | None, value: float = 1.0) -> str | None:
    """Why `quantity` is unknown or `unit` does not convert to its canonical unit (None if neither)."""
    try:
        canonical_unit(quantity)
        if unit is not None:
            to_canonical(quantity, value, unit)
    except UnitError as exc:
        return str(exc)
    return None


def _observation_problem(obs: Observation) -> str | None:
    """Why an observation (or its `among`) names an unknown quantity or a unit that does not convert."""
    value = obs.value if obs.stat not in ("percent_change", "fold_change") else 1.0
    why = _quantity_problem(obs.quantity, obs.unit, value)
    if why is None and obs.among is not None:
        why = _quantity_problem(obs.among.quantity, obs.among.unit)
    return why


def _drop_key(raw: dict[str, Any], loc: list[Any], positions: list[tuple[int, list[int]]]) -> str:
    """Delete the key at a validation error's `loc` (positions in the trimmed mapping) from `raw`; its path."""
    node: Any = raw
    path = list(loc)
    if len(path) >= 2 and path[0] == "arms" and isinstance(path[1], int):
        ai, keep = positions[path[1]]
        path[1] = ai
        if len(path) >= 4 and path[2] == "observations" and isinstance(path[3], int):
            path[3] = keep[path[3]]
    for k in path[:-1]:
        node = node[k]
    del node[path[-1]]
    return ".".join(str(k + 1 if i in (1, 3) and isinstance(k, int) else k) for i, k in enumerate(path))


def validate_study_leniently(raw: Any, source: str) -> tuple[Study, list[str], list[str]]:
    """Validate a study mapping, leaving out (and listing) invalid arms and observations.

    `hpgsim validate` reads files it has never seen: one observation it cannot read (an unknown
    quantity, a unit that does not convert) or one arm it cannot simulate (a drug hpgsim lacks) should
    not cost the rest of the study. The omitted ones keep their place in the results (no simulated
    value, with the reason). An inclusion filter on an unknown quantity is dropped (a problem: the
    cohort is then wider than the study's). Keys that SCHEMA.md does not define (`doi`, `design`, a
    misspelt `stdev`) are ignored with a note. Problems of the whole file (not a mapping, a bad id,
    population or phenotype, no arm left) still raise.

    Returns:
        The study (with `omitted` and `shape` set when something was left out), one message per
        problem (file, arm, observation, value and fix) and one note per ignored key.

    Raises:
        SpecError: the file as a whole is invalid.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("arms"), list) or not raw["arms"]:
        return validate_study(raw, source), [], []  # the strict check names what is wrong with the file
    raw = copy.deepcopy(raw)
    arm_names = [str(a.get("name", i + 1)) if isinstance(a, dict) else str(i + 1) for i, a in enumerate(raw["arms"])]
    bad_arms: dict[int, str] = {}
    bad_obs: dict[tuple[int, int], str] = {}
    notes: list[str] = []
    for _ in range(len(raw["arms"]) + 10):  # each pass removes an arm, an observation or unknown keys
        trial, positions = _kept(raw, bad_arms, bad_obs)
        try:
            data = StudyFile.model_validate(trial)
            break
        except ValidationError as exc:
            errors = exc.errors()
            extra = [e for e in errors if e["type"] == "extra_forbidden"]
            for e in extra:
                path = _drop_key(raw, list(e["loc"]), positions)
                notes.append(f"{source}: key '{path}' is not a study-file key (SCHEMA.md); ignored")
            if extra:
                continue
            for e in errors:
                loc = list(e["loc"])
                msg = f"{e['msg'].removeprefix('Value error, ')} (got {e.get('input')!r})"
                if len(loc) >= 2 and loc[0] == "arms" and isinstance(loc[1], int) and loc[1] < len(positions):
                    ai, keep = positions[loc[1]]
                    if len(loc) >= 4 and loc[2] == "observations" and isinstance(loc[3], int) and loc[3] < len(keep):
                        oi = keep[loc[3]]
                        key = ".".join(str(x) for x in loc[4:])
                        where = f"key '{key}': " if key else ""
                        bad_obs.setdefault((ai, oi), f"{source}, arm '{arm_names[ai]}', observation {oi + 1}: {where}{msg}")
                    else:
                        key = ".".join(str(x) for x in loc[2:])
                        bad_arms.setdefault(ai, f"{source}, arm '{arm_names[ai]}', key '{key}': {msg}")
                else:
                    return validate_study(raw, source), [], notes  # a problem of the whole file: the strict message
    else:
        return validate_study(raw, source), [], notes  # could not isolate the problem: the strict message
    _check_phenotype(data.population.phenotype, source)
    filter_problems = []
    filters = []
    for i, f in enumerate(data.population.inclusion):
        why = _quantity_problem(f.quantity, f.unit)
        if why is None:
            filters.append(f)
        else:
            filter_problems.append(f"{source}, key 'population.inclusion', filter {i + 1}: {why} The filter is dropped.")
    protocols: list[Protocol] = []
    arms: list[Arm] = []
    for arm, (ai, keep) in zip(data.arms, positions, strict=True):
        try:
            protocol = validate_protocol(arm.protocol, source=f"{source}, arm '{arm.name}', protocol")
        except HpgsimError as exc:
            bad_arms[ai] = str(exc)
            continue
        obs_kept = []
        for obs, oi in zip(arm.observations, keep, strict=True):
            why = _observation_problem(obs)
            if why is not None:
                bad_obs[(ai, oi)] = f"{source}, arm '{arm.name}', observation {oi + 1} ({obs.quantity}): {why}"
                continue
            obs_kept.append(obs)
        protocols.append(protocol)
        arms.append(arm.model_copy(update={"observations": obs_kept}))
    problems = filter_problems + [bad_arms[a] for a in sorted(bad_arms)]
    problems += [bad_obs[k] for k in sorted(bad_obs) if k[0] not in bad_arms]
    if not any(a.observations for a in arms):
        raise SpecError(f"{source}: no arm with a valid observation is left: " + "; ".join(problems))
    if filter_problems:
        data = data.model_copy(update={"population": data.population.model_copy(update={"inclusion": filters})})
    if not bad_arms and not bad_obs:
        return Study(source=source, data=data, protocols=tuple(protocols)), problems, notes
    shape = tuple(
        len(a["observations"]) if isinstance(a, dict) and isinstance(a.get("observations"), list) else 0 for a in raw["arms"]
    )
    omitted = []
    for ai, arm_raw in enumerate(raw["arms"]):
        obs_raw = arm_raw.get("observations") if isinstance(arm_raw, dict) else None
        for oi in range(shape[ai]):
            reason = bad_arms.get(ai) or bad_obs.get((ai, oi))
            if reason is not None:
                omitted.append(Omitted(ai, oi, _omitted_row(data.id, arm_names[ai], obs_raw[oi] if obs_raw else None), reason))
    data = data.model_copy(update={"arms": arms})
    return Study(source=source, data=data, protocols=tuple(protocols), omitted=tuple(omitted), shape=shape), problems, notes


def in_file_order(study: Study, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The study's result rows with its omitted observations put back in their places (file order).

    `rows` are the rows of the simulated observations, in order. An omitted observation's row has no
    simulated value, `within` False, no direction, and its reason under `error`.
    """
    if not study.omitted:
        return rows
    gaps = {(o.arm, o.index): o for o in study.omitted}
    it = iter(rows)
    out = []
    for ai, count in enumerate(study.shape):
        for oi in range(count):
            o = gaps.get((ai, oi))
            if o is None:
                out.append(next(it))
            else:
                out.append(_unsimulated(o.row, o.reason))
    return out


def _unsimulated(published: dict[str, Any], reason: str) -> dict[str, Any]:
    """A scored result row without a simulated value (not counted in the score), with its reason."""
    return {
        **published,
        "simulated": None,
        "simulated_ci95": None,
        "n_virtual": 0,
        "within": False,
        "direction_right": None,
        "rule": "not simulated",
        "error": reason,
    }


def published_fields(study: Study, arm_name: str, obs: Observation) -> dict[str, Any]:
    """The published fields of an observation's result row (SCHEMA.md output)."""
    return {
        "study": study.id,
        "arm": arm_name,
        "quantity": obs.quantity,
        "unit": obs.unit,
        "day": obs.day,
        "stat": obs.stat,
        "observed": obs.value,
    }


def unsimulated_rows(study: Study, reason: str) -> list[dict[str, Any]]:
    """Result rows for a study whose simulation failed (its kept observations, in order), each with `reason`."""
    return [_unsimulated(published_fields(study, arm.name, obs), reason) for arm in study.data.arms for obs in arm.observations]


def load_study(path: str | Path) -> Study:
    """Read and validate a study YAML file."""
    return validate_study(read_yaml_file(path, "study", SpecError), str(path))


def _study_files(paths: list[str | Path]) -> tuple[list[Path], list[str]]:
    """The files named and every ``*.yaml`` in the folders named (by name), and each empty folder's message."""
    files: list[Path] = []
    empty: list[str] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            found = sorted(p.glob("*.yaml"))
            if not found:
                empty.append(f"{p}: no study files (*.yaml) in this folder.")
            files.extend(found)
        else:
            files.append(p)
    return files, empty


def load_studies(paths: list[str | Path]) -> list[Study]:
    """Load study files and every ``*.yaml`` inside given folders, sorted by file name within a folder."""
    files, empty = _study_files(paths)
    if empty:
        raise SpecError(empty[0])
    return [load_study(f) for f in files]


def load_studies_leniently(paths: list[str | Path]) -> tuple[list[Study], list[str], list[str]]:
    """Like :func:`load_studies`, but an invalid file, arm or observation is skipped and listed.

    Returns:
        The studies that could be read (some with omitted arms or observations), the problems and
        the notes (ignored keys); see :func:`validate_study_leniently`.

    Raises:
        SpecError: no study could be read at all.
    """
    studies: list[Study] = []
    notes: list[str] = []
    files, problems = _study_files(paths)
    for f in files:
        try:
            study, found_problems, found_notes = validate_study_leniently(read_yaml_file(f, "study", SpecError), str(f))
        except SpecError as exc:
            problems.append(f"{exc} (file skipped)")
            continue
        studies.append(study)
        problems.extend(found_problems)
        notes.extend(found_notes)
    if not studies:
        raise SpecError("no study could be read: " + " | ".join(problems))
    return studies, problems, notes


def packaged_study_dir() -> Path:
    """The folder of the study files shipped with hpgsim."""
    return Path(str(resources.files("hpgsim.data").joinpath("studies")))
