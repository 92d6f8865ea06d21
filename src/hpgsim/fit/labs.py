"""Labs files (docs/fit.md): one man's measured labs, read, converted to canonical units and checked.

A labs file names the man (age, BMI, the phenotype used as prior), his visits (day or date, time of
the draw, any of the fitted quantities as ``"value unit"`` strings or ``{value, unit}``; ``"<value unit"``
for a result below the assay's limit) and, optionally, the drugs he took as a protocol whose day 0 is
the labs' day 0. Impossible values are rejected with file, key, value and the fix.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpgsim.errors import FitError, HpgsimError, UnitError
from hpgsim.protocol.schema import Protocol, accept, load_protocol, validate_protocol
from hpgsim.units import canonical_unit, to_canonical
from hpgsim.yamlfile import read_yaml_file

# Quantities a labs file may report, with the largest value we accept (canonical units). A value above
# it is not physiology (or not in the unit written): it is rejected, not fitted.
FITTED_QUANTITIES: dict[str, float] = {
    "total_testosterone": 5000.0,  # ng/dL; supraphysiological TRT troughs stay below ~3000
    "free_testosterone": 2000.0,  # pg/mL
    "shbg": 300.0,  # nmol/L
    "estradiol": 1000.0,  # pg/mL
    "lh": 200.0,  # IU/L
    "fsh": 200.0,  # IU/L
    "inhibin_b": 2000.0,  # pg/mL
    "sperm_concentration": 1000.0,  # 1e6/mL
}
_SPERM_UNITS = {
    "1e6/ml": 1.0,
    "million/ml": 1.0,
    "millions/ml": 1.0,
    "m/ml": 1.0,
    "mill/ml": 1.0,
    "10^6/ml": 1.0,
    "x10^6/ml": 1.0,
    "10**6/ml": 1.0,
    "/ml": 1e-6,
    "1/ml": 1e-6,
}
_ALIASES = {  # names people write -> canonical (suggested in the error, never silently accepted)
    "testosterone": "total_testosterone",
    "t": "total_testosterone",
    "tt": "total_testosterone",
    "total_t": "total_testosterone",
    "free_t": "free_testosterone",
    "ft": "free_testosterone",
    "e2": "estradiol",
    "oestradiol": "estradiol",
    "inhibin": "inhibin_b",
    "sperm": "sperm_concentration",
    "concentration": "sperm_concentration",
}
_TOP_KEYS = {"patient", "visits", "protocol", "start_date"}
_PATIENT_KEYS = {"name", "age", "bmi", "phenotype"}
_VISIT_KEYS = {"day", "date", "time", "note"}
DEFAULT_HOUR = 8.0


@dataclass(frozen=True)
class Observation:
    """One lab result in canonical units.

    Attributes:
        quantity: canonical name.
        value: the value in the canonical unit (for a censored result, the assay limit).
        censored: True for a result reported as below the limit ("<0.1 IU/L").
        text: what the file said (echoed in outputs).
    """

    quantity: str
    value: float
    censored: bool
    text: str


@dataclass(frozen=True)
class Visit:
    """One visit: day (relative to the labs' day 0), clock hour of the draw and its results."""

    day: float
    hour: float
    observations: tuple[Observation, ...]
    label: str


@dataclass(frozen=True)
class Labs:
    """A validated labs file.

    Attributes:
        name: the man's label.
        age: years.
        bmi: kg/m2.
        phenotype: the phenotype whose parameter distribution is the prior.
        visits: sorted by day.
        protocol: the drugs he took (day 0 = the labs' day 0), or None.
        source: file name (or "labs") for messages.
    """

    name: str
    age: float
    bmi: float
    phenotype: str
    visits: tuple[Visit, ...]
    protocol: Protocol | None = None
    source: str = "labs"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def echo(self) -> list[dict[str, Any]]:
        """The visits as plain data (for fit.json)."""
        return [
            {
                "day": v.day,
                "hour": v.hour,
                "label": v.label,
                "labs": {
                    o.quantity: {
                        "value": o.value,
                        "unit": canonical_unit(o.quantity),
                        "censored": o.censored,
                        "as_written": o.text,
                    }
                    for o in v.observations
                },
            }
            for v in self.visits
        ]


def _num(value: Any, where: str, what: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FitError(f"{where}: {what} must be a number between {lo:g} and {hi:g}, got {value!r}.")
    try:
        x = float(str(value).split()[0]) if isinstance(value, str) else float(value)
    except (ValueError, IndexError):
        raise FitError(f"{where}: {what} must be a number between {lo:g} and {hi:g}, got {value!r}.") from None
    if not (lo <= x <= hi):
        raise FitError(f"{where}: {what} {value!r} is outside {lo:g}-{hi:g}. Check the value.")
    return x


def _hour(value: Any, where: str) -> float:
    if value is None:
        return DEFAULT_HOUR
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 08:30 as the sexagesimal integer 510 (minutes)
        return value / 60.0
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", str(value))
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise FitError(f"{where}: time {value!r} is not a clock time. Write it as HH:MM in quotes, e.g. time: '08:30'.")
    return int(m.group(1)) + int(m.group(2)) / 60.0


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise FitError(f"{where}: {value!r} is not a date. Write dates as YYYY-MM-DD, e.g. 2026-03-14.") from None


def parse_lab_value(quantity: str, raw: Any, where: str) -> Observation:
    """Read one result ("412 ng/dL", "<0.1 IU/L", {value: 412, unit: ng/dL}) into canonical units.

    Raises:
        FitError: no unit, unknown unit, wrong dimension, negative or impossible value.
    """
    text = raw if isinstance(raw, str) else repr(raw)
    if isinstance(raw, dict):
        extra = set(raw) - {"value", "unit"}
        if extra or "value" not in raw or "unit" not in raw:
            raise FitError(f"{where}: write a result as '412 ng/dL' or {{value: 412, unit: ng/dL}}, got {raw!r}.")
        value_text, unit = str(raw["value"]).strip(), str(raw["unit"]).strip()
    elif isinstance(raw, str):
        m = re.fullmatch(r"\s*(<?\s*[-+0-9.eE]+)\s*(.*?)\s*", raw)
        if not m:
            raise FitError(
                f"{where}: cannot read {raw!r}. Write a number and a unit, "
                "e.g. '412 ng/dL' (or '<0.1 IU/L' below the assay limit)."
            )
        value_text, unit = m.group(1), m.group(2)
    else:
        raise FitError(f"{where}: {raw!r} has no unit. Write the unit after the number, e.g. '{raw} {canonical_unit(quantity)}'.")
    censored = value_text.startswith("<")
    try:
        value = float(value_text.lstrip("<").strip())
    except ValueError:
        raise FitError(f"{where}: {value_text!r} is not a number.") from None
    if not unit:
        raise FitError(
            f"{where}: {raw!r} has no unit. Write the unit after the number, e.g. '{value:g} {canonical_unit(quantity)}'."
        )
    if value < 0:
        raise FitError(f"{where}: value {raw!r} is negative; a lab result cannot be. Check the sign.")
    if quantity == "sperm_concentration":
        key = unit.replace(" ", "").lower()
        if key not in _SPERM_UNITS:
            raise FitError(f"{where}: unknown unit {unit!r} for a sperm concentration. Use 'million/mL' (= 1e6/mL, M/mL).")
        canonical = value * _SPERM_UNITS[key]
    else:
        try:
            canonical = to_canonical(quantity, value, unit)
        except UnitError as exc:
            raise FitError(f"{where}: {exc} Write the result in a unit such as '{canonical_unit(quantity)}'.") from exc
    hi = FITTED_QUANTITIES[quantity]
    if canonical > hi:
        raise FitError(
            f"{where}: {raw!r} is {canonical:.4g} {canonical_unit(quantity)}, above the largest plausible value "
            f"({hi:g} {canonical_unit(quantity)}). Check the number and the unit (e.g. nmol/L vs ng/dL)."
        )
    if canonical == 0 and not censored:
        if quantity != "sperm_concentration":
            raise FitError(
                f"{where}: a result of 0 cannot be fitted. If it was below the assay's limit, write that limit with '<', "
                f"e.g. '<0.1 {canonical_unit(quantity)}'."
            )
        # azoospermia: below 0.01 million/mL (DESIGN.md)
        canonical, censored = 0.01, True
    return Observation(quantity, float(canonical), censored, str(text))


def validate_labs(raw: Any, source: str = "labs", base_dir: Path | None = None) -> Labs:
    """Check a labs mapping and convert it (see docs/fit.md for the format).

    Raises:
        FitError: any problem, naming the file, key and value and how to fix it.
    """
    from hpgsim.population.phenotypes import get_phenotype

    if not isinstance(raw, dict):
        raise FitError(f"{source}: a labs file is a mapping with 'patient' and 'visits' (see docs/fit.md).")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise FitError(f"{source}: unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(_TOP_KEYS))}.")
    pat = raw.get("patient")
    if not isinstance(pat, dict):
        raise FitError(
            f"{source}, key 'patient': missing or not a mapping. Give at least age and bmi, e.g. patient: {{age: 35, bmi: 27}}."
        )
    bad = set(pat) - _PATIENT_KEYS
    if bad:
        raise FitError(f"{source}, key 'patient': unknown keys {sorted(bad)}; allowed: {', '.join(sorted(_PATIENT_KEYS))}.")
    for k in ("age", "bmi"):
        if k not in pat:
            raise FitError(
                f"{source}, key 'patient.{k}': missing. Give the man's {'age in years' if k == 'age' else 'BMI in kg/m2'}."
            )
    age = _num(pat["age"], f"{source}, key 'patient.age'", "age (years)", 18, 90)
    bmi = _num(pat["bmi"], f"{source}, key 'patient.bmi'", "BMI (kg/m2)", 15, 60)
    phenotype = str(pat.get("phenotype", "subfertile"))
    try:
        get_phenotype(phenotype)
    except HpgsimError as exc:
        raise FitError(f"{source}, key 'patient.phenotype': {exc}") from exc

    protocol = None
    if raw.get("protocol") is not None:
        pr = raw["protocol"]
        try:
            if isinstance(pr, str):
                path = Path(pr)
                if not path.is_absolute() and base_dir is not None:
                    path = base_dir / path
                protocol = load_protocol(path)
            else:
                protocol = validate_protocol(pr, source=f"{source}, key 'protocol'")
        except HpgsimError as exc:
            raise FitError(f"{source}, key 'protocol': {exc}") from exc
    start = _date(raw["start_date"], f"{source}, key 'start_date'") if raw.get("start_date") is not None else None

    visits_raw = raw.get("visits")
    if not isinstance(visits_raw, list) or not visits_raw:
        raise FitError(f"{source}, key 'visits': give a list of one or more visits (each with day or date and labs).")
    visits: list[Visit] = []
    for i, v in enumerate(visits_raw):
        where = f"{source}, key 'visits[{i}]'"
        if not isinstance(v, dict):
            raise FitError(f"{where}: a visit is a mapping (day or date, time, and results), got {v!r}.")
        if ("day" in v) == ("date" in v):
            raise FitError(f"{where}: give exactly one of 'day' (days from day 0) or 'date' (YYYY-MM-DD).")
        if "day" in v:
            day = _num(v["day"], f"{where}.day", "day", -36500, 36500)
        else:
            d = _date(v["date"], f"{where}.date")
            if start is None and protocol is not None:
                raise FitError(
                    f"{where}.date: visits given by date need 'start_date' (the date of the protocol's day 0) "
                    "at the top of the file."
                )
            if start is None:  # no drugs: days are counted from the first dated visit
                first = next((x for x in visits_raw if isinstance(x, dict) and "date" in x), v)
                start = _date(first["date"], f"{source}, key 'visits[0].date'")
            day = float((d - start).days)
        hour = _hour(v.get("time"), f"{where}.time")
        obs = []
        for k, val in v.items():
            if k in _VISIT_KEYS:
                continue
            if k not in FITTED_QUANTITIES:
                close = difflib.get_close_matches(k, list(FITTED_QUANTITIES) + list(_VISIT_KEYS), n=1, cutoff=0.5)
                guess = _ALIASES.get(str(k).lower().replace(" ", "_"), close[0] if close else None)
                hint = f" Did you mean '{guess}'?" if guess else ""
                raise FitError(
                    f"{where}: unknown key {k!r} (value {val!r}).{hint} Labs that can be fitted: {', '.join(FITTED_QUANTITIES)}."
                )
            obs.append(parse_lab_value(k, val, f"{where}.{k}"))
        if not obs:
            raise FitError(f"{where}: no results. Add at least one of {', '.join(FITTED_QUANTITIES)}.")
        label = str(v.get("date", f"day {day:g}"))
        visits.append(Visit(day, hour, tuple(obs), label))
    visits.sort(key=lambda x: x.day)
    return Labs(str(pat.get("name", Path(source).stem)), age, bmi, phenotype, tuple(visits), protocol, source)


def load_labs(path: str | Path) -> Labs:
    """Read and validate a labs file (YAML).

    Raises:
        FitError: missing file, bad YAML, or invalid content (file, key, value, fix).
    """
    p = Path(path)
    raw = read_yaml_file(p, "labs", FitError)
    return validate_labs(raw, source=str(p), base_dir=p.parent)


def as_labs(labs: Labs | str | Path | dict[str, Any]) -> Labs:
    """Accept a Labs, a labs file path or a mapping in the labs-file format."""
    return accept(labs, Labs, load_labs, validate_labs, FitError, "labs: expected a labs file path, a mapping or a Labs")
