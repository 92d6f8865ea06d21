"""Protocol files (DESIGN.md section 3): schema, loading and validation.

A protocol is parsed in two steps: pydantic checks the structure (keys, types), then
:func:`validate_protocol` checks the meaning (drug names, units, times) and returns a
:class:`Protocol` whose numbers are in engine units (hours, the drug's dose unit). Every error is a
:class:`~hpgsim.errors.ProtocolError` naming the file, the key, the value and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pint
from pydantic import BaseModel, ConfigDict, ValidationError

from hpgsim.errors import HpgsimError, ProtocolError, UnitError
from hpgsim.model.spec import ModelSpec, load_model
from hpgsim.units import parse_quantity
from hpgsim.yamlfile import read_yaml_file

MAX_DURATION_H = 20 * 365.25 * 24
MIN_INTERVAL_H = 1.0 / 60.0

_Scalar = str | int | float


class RegimenFile(BaseModel):
    """One regimen as written in a protocol file (structure only)."""

    model_config = ConfigDict(extra="forbid")
    drug: str
    dose: _Scalar
    every: _Scalar | None = None
    at: list[_Scalar] | None = None
    start: _Scalar | None = None
    stop: _Scalar | None = None
    route: str | None = None


class ProtocolFile(BaseModel):
    """A protocol file as written (structure only)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    duration: _Scalar
    regimens: list[RegimenFile] = []


@dataclass(frozen=True)
class Regimen:
    """A validated regimen in engine units.

    Attributes:
        drug: drug name (a key of the drug library).
        dose: amount per administration in the drug's dose unit (``dose_unit``).
        dose_unit: "mg", "ug" or "IU".
        route: administration route.
        times_h: administration times in hours from day 0, sorted, all before stop and duration.
        dose_text: the dose as the user wrote it (for reports).
        interval_h: the regular interval in hours, or None for explicit times.
    """

    drug: str
    dose: float
    dose_unit: str
    route: str
    times_h: tuple[float, ...]
    dose_text: str
    interval_h: float | None


@dataclass(frozen=True)
class Protocol:
    """A validated protocol: a duration in hours and its regimens."""

    name: str
    duration_h: float
    regimens: tuple[Regimen, ...]

    @property
    def duration_days(self) -> float:
        return self.duration_h / 24.0


def _where(source: str, key: str) -> str:
    return f"{source}, key '{key}'"


def _hours(value: object, source: str, key: str, *, allow_zero: bool = True) -> float:
    try:
        q = parse_quantity(value, field=key)
        hours = float(q.to("hour").magnitude)
    except UnitError as exc:
        raise ProtocolError(
            f"{_where(source, key)}: {exc} Durations need a time unit, e.g. '12 week', '3.5 day', '90 min'."
        ) from exc
    except pint.DimensionalityError as exc:
        raise ProtocolError(
            f"{_where(source, key)}: {value!r} is not a duration. Use a time unit, e.g. '1 day', '90 min' or '12 week'."
        ) from exc
    if hours < 0 or (hours == 0 and not allow_zero):
        raise ProtocolError(f"{_where(source, key)}: {value!r} must be {'positive' if not allow_zero else 'zero or more'}.")
    return hours


def _format_pydantic(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(
                f"unknown key '{loc}' (value {err.get('input')!r}); allowed keys are name, duration, regimens and, "
                "in a regimen, drug, dose, every, at, start, stop, route"
            )
        elif err["type"] == "missing":
            parts.append(f"missing required key '{loc}'")
        else:
            parts.append(f"key '{loc}': {err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r})")
    return f"{source}: invalid protocol: " + "; ".join(parts) + "."


def validate_protocol(raw: Any, source: str = "protocol", spec: ModelSpec | None = None) -> Protocol:
    """Validate a protocol mapping (as read from YAML) and convert it to engine units.

    Args:
        raw: the parsed YAML (a mapping).
        source: the file name or label used in error messages.
        spec: the model (default: the packaged model) whose drug library names are allowed.

    Returns:
        The validated protocol.

    Raises:
        ProtocolError: with the file, key, value and a fix.
    """
    spec = spec or load_model()
    if not isinstance(raw, dict):
        raise ProtocolError(
            f"{source}: a protocol must be a mapping with at least 'duration' (e.g. 'duration: 26 week'), "
            f"got {type(raw).__name__}."
        )
    try:
        pf = ProtocolFile.model_validate(raw)
    except ValidationError as exc:
        raise ProtocolError(_format_pydantic(exc, source)) from exc

    duration_h = _hours(pf.duration, source, "duration", allow_zero=False)
    if duration_h > MAX_DURATION_H:
        raise ProtocolError(
            f"{_where(source, 'duration')}: {pf.duration!r} is longer than the 20-year limit. Shorten the horizon "
            "(the model is not meant for lifetime projections)."
        )
    regimens = []
    for i, r in enumerate(pf.regimens):
        regimens.append(_validate_regimen(r, i, duration_h, source, spec))
    return Protocol(name=pf.name or Path(source).stem, duration_h=duration_h, regimens=tuple(regimens))


# Other names for the drugs of the library (normalised: lower case, "_" for spaces and hyphens).
DRUG_ALIASES = {
    "clomiphene": "clomiphene_citrate",
    "clomifene": "clomiphene_citrate",
    "clomifene_citrate": "clomiphene_citrate",
    "enclomifene": "enclomiphene",
    "human_chorionic_gonadotropin": "hcg",
    "rfsh": "recombinant_fsh",
    "follitropin": "recombinant_fsh",
    "follitropin_alfa": "recombinant_fsh",
    "follitropin_beta": "recombinant_fsh",
    "gnrh": "gonadorelin",
    "lhrh": "gonadorelin",
}
# Route spellings seen in papers (normalised: lower case, no dots or spaces).
ROUTE_ALIASES = {
    "intramuscular": "im",
    "subcutaneous": "sc",
    "subq": "sc",
    "sq": "sc",
    "intravenous": "iv",
    "po": "oral",
    "peros": "oral",
    "orally": "oral",
    "topical": "transdermal",
    "cutaneous": "transdermal",
}


def _normalised(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def drug_name(name: str, spec: ModelSpec) -> str | None:
    """The library's name for `name` ("hCG", "Clomiphene", "testosterone enanthate" are accepted), or None."""
    if name in spec.drugs:
        return name
    n = _normalised(name)
    n = DRUG_ALIASES.get(n, n)
    return n if n in spec.drugs else None


def _route_name(route: str) -> str:
    r = route.strip().lower().replace(".", "").replace(" ", "")
    return ROUTE_ALIASES.get(r, r)


def _validate_regimen(r: RegimenFile, i: int, duration_h: float, source: str, spec: ModelSpec) -> Regimen:
    key = f"regimens[{i}]"
    name = drug_name(r.drug, spec)
    if name is None:
        close = difflib.get_close_matches(_normalised(r.drug), list(spec.drugs), n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ProtocolError(
            f"{_where(source, key + '.drug')}: unknown drug {r.drug!r}.{hint} Known drugs: {', '.join(sorted(spec.drugs))} "
            "(see `hpgsim drugs`)."
        )
    drug = spec.drugs[name]
    # dose
    try:
        q = parse_quantity(r.dose, field=f"{key}.dose")
    except UnitError as exc:
        raise ProtocolError(f"{source}: {exc} {drug.name} doses are given in {drug.dose_unit}.") from exc
    try:
        dose = float(q.to(drug.dose_unit).magnitude)
    except pint.DimensionalityError as exc:
        raise ProtocolError(
            f"{_where(source, key + '.dose')}: {r.dose!r} cannot be converted to {drug.dose_unit}, the dose unit of "
            f"{drug.name}. Write e.g. '1 {drug.dose_unit}'."
        ) from exc
    if not dose > 0:
        raise ProtocolError(f"{_where(source, key + '.dose')}: dose {r.dose!r} must be greater than zero.")
    # route
    route = drug.default_route if r.route is None else _route_name(r.route)
    if route not in drug.routes:
        raise ProtocolError(
            f"{_where(source, key + '.route')}: {drug.name} has no route {r.route!r}; use one of {sorted(drug.routes)}."
        )
    # timing
    start_h = 0.0 if r.start is None else _hours(r.start, source, key + ".start")
    stop_h = duration_h if r.stop is None else _hours(r.stop, source, key + ".stop")
    if r.stop is not None and stop_h <= start_h:
        raise ProtocolError(
            f"{_where(source, key + '.stop')}: stop {r.stop!r} is not after start {r.start or '0 day'!r}. "
            "Make stop later than start (no dose is given at or after stop)."
        )
    if (r.every is None) == (r.at is None):
        raise ProtocolError(
            f"{_where(source, key)}: give exactly one of 'every' (an interval, e.g. '1 day') or 'at' (a list of times, "
            f"e.g. ['0 h', '12 h']); got every={r.every!r}, at={r.at!r}."
        )
    end_h = min(stop_h, duration_h)
    interval_h: float | None = None
    if r.every is not None:
        interval_h = _hours(r.every, source, key + ".every", allow_zero=False)
        if interval_h < MIN_INTERVAL_H - 1e-12:
            raise ProtocolError(
                f"{_where(source, key + '.every')}: interval {r.every!r} is shorter than one minute. Use an interval of "
                "1 min or more (for a continuous infusion, give frequent small doses, e.g. every: 10 min)."
            )
        n = int((end_h - start_h) / interval_h + 1e-9) + 1
        times = [start_h + k * interval_h for k in range(n)]
        times = [t for t in times if t < end_h - 1e-9]
    else:
        assert r.at is not None
        times = sorted(start_h + _hours(v, source, f"{key}.at[{j}]") for j, v in enumerate(r.at))
        times = [t for t in times if t < end_h - 1e-9]
    return Regimen(
        drug=drug.name,
        dose=dose,
        dose_unit=drug.dose_unit,
        route=route,
        times_h=tuple(times),
        dose_text=str(r.dose),
        interval_h=interval_h,
    )


_T = TypeVar("_T")


def accept(
    value: object,
    cls: type[_T],
    load: Callable[[str | Path], _T],
    validate: Callable[[dict[str, Any]], _T],
    error: type[HpgsimError],
    expected: str,
) -> _T:
    """Accept a `cls` instance as is, a file path (read with `load`) or a mapping (checked with `validate`).

    Anything else raises `error` with the message ``"{expected}, got {type name}."``.
    """
    if isinstance(value, cls):
        return value
    if isinstance(value, str | Path):
        return load(value)
    if isinstance(value, dict):
        return validate(value)
    raise error(f"{expected}, got {type(value).__name__}.")


def load_protocol(path: str | Path, spec: ModelSpec | None = None) -> Protocol:
    """Read and validate a protocol YAML file.

    Raises:
        ProtocolError: the file is missing, is not valid YAML, or fails validation.
    """
    raw = read_yaml_file(path, "protocol", ProtocolError)
    return validate_protocol(raw, source=str(path), spec=spec)


def protocol_flags(protocol: Protocol, spec: ModelSpec | None = None) -> list[str]:
    """Flags for doses outside the range the model was validated on (they still run), and each used drug's caveat."""
    spec = spec or load_model()
    flags = []
    for r in protocol.regimens:
        d = spec.drugs[r.drug]
        if r.dose < d.studied_min or r.dose > d.studied_max:
            flags.append(
                f"{r.drug} {r.dose:g} {r.dose_unit} per dose is outside the studied range "
                f"{d.studied_min:g}-{d.studied_max:g} {d.dose_unit} ({d.studied_source}): outside the range the model "
                "was validated on"
            )
    for name in dict.fromkeys(r.drug for r in protocol.regimens):
        if spec.drugs[name].caveat:
            flags.append(f"{name}: {spec.drugs[name].caveat}")
    return flags
