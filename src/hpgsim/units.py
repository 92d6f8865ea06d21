"""Units at the boundaries: parsing "26 week" or "1 mg" with pint and converting to engine units.

Only boundary code (protocol loading, study files, CLI) calls these functions; inside the engine numbers
are plain floats in the units declared in the model data files.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import pint

from hpgsim.errors import UnitError

# Conversions fixed by DESIGN.md section 2.
NG_DL_PER_NMOL_L_TESTOSTERONE = 28.84
PMOL_L_PER_PG_ML_ESTRADIOL = 3.671
PMOL_L_PER_PG_ML_FREE_T = 3.467


@lru_cache(maxsize=1)
def registry() -> pint.UnitRegistry:
    """The shared unit registry, with the units hormone assays and drug labels use."""
    try:  # pint parses its definitions file once and caches the result on disk (saves ~0.6 s per process)
        ureg: pint.UnitRegistry = pint.UnitRegistry(autoconvert_offset_to_baseunit=True, cache_folder=":auto:")
    except OSError:
        ureg = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)
    # International units: an amount of biological activity; not convertible to mass.
    ureg.define("international_unit = [biological_activity] = IU")
    ureg.define("milli_international_unit = 1e-3 * international_unit = mIU")
    # In hormone assays "U/L" means IU/L (pint's own "U" is the enzyme unit): redefine it, quietly.
    pint_log = logging.getLogger("pint.util")
    level = pint_log.level
    pint_log.setLevel(logging.ERROR)
    try:
        ureg.define("unit_activity = international_unit = U")
    finally:
        pint_log.setLevel(level)
    ureg.define("cells = [cell_count]")
    # Semen counts are written in millions ("1e6/mL", "10^6/mL", "million/mL"): a count scale pint can hold.
    ureg.define("million = 1e6")
    # Spellings seen in papers and protocols: "wk", and "units" for IU (pint would read "units" as micro-nits).
    ureg.define("@alias week = wk")
    ureg.define("@alias international_unit = units")
    return ureg


def parse_quantity(text: object, *, field: str) -> pint.Quantity:
    """Parse "1 mg", "26 week" or "3.5 day" into a pint quantity.

    Args:
        text: the value as written by the user; a bare number is rejected (units are required).
        field: where the value came from, used in error messages (e.g. "regimens[0].dose").

    Returns:
        The parsed quantity.

    Raises:
        UnitError: the value has no unit or pint cannot parse it.
    """
    if isinstance(text, bool) or text is None:
        raise UnitError(f"{field}: expected an amount with a unit such as '1 mg' or '12 week', got {text!r}.")
    if isinstance(text, int | float):
        raise UnitError(f"{field}: {text!r} has no unit. Write the unit after the number, e.g. '{text} mg' or '{text} day'.")
    s = str(text).strip()
    ureg = registry()
    try:
        q: pint.Quantity = ureg.Quantity(s)
    except Exception as exc:  # pint raises several unrelated types
        raise UnitError(
            f"{field}: cannot read {s!r} as an amount with a unit ({exc.__class__.__name__}). "
            "Write a number and a unit, e.g. '1 mg', '500 IU', '90 min' or '26 week'."
        ) from exc
    if not isinstance(q, pint.Quantity) or q.dimensionless:
        raise UnitError(f"{field}: {s!r} has no unit. Write the unit after the number, e.g. '{s} mg' or '{s} day'.")
    return q


def to_hours(text: object, *, field: str) -> float:
    """Parse a duration and return it in hours (raises UnitError if it is not a time)."""
    q = parse_quantity(text, field=field)
    try:
        return float(q.to("hour").magnitude)
    except pint.DimensionalityError as exc:
        raise UnitError(f"{field}: {text!r} is not a duration. Use a time unit, e.g. '1 day', '90 min', '12 week'.") from exc


def convert(value: float, from_unit: str, to_unit: str, *, field: str = "value") -> float:
    """Convert a number between two units (raises UnitError naming the field on failure)."""
    ureg = registry()
    try:
        return float(ureg.Quantity(value, from_unit).to(to_unit).magnitude)
    except Exception as exc:
        raise UnitError(f"{field}: cannot convert {value} {from_unit} to {to_unit}: {exc}") from exc


# Canonical output units (DESIGN.md section 2) and molar masses for mass <-> amount conversions.
CANONICAL: dict[str, str] = {
    "total_testosterone": "ng/dL",
    "free_testosterone": "pg/mL",
    "bioavailable_testosterone": "ng/dL",
    "estradiol": "pg/mL",
    "lh": "IU/L",
    "fsh": "IU/L",
    "shbg": "nmol/L",
    "inhibin_b": "pg/mL",
    "te_ratio": "(ng/dL)/(pg/mL)",
    "intratesticular_testosterone": "nmol/L",
    "sperm_concentration": "1e6/mL",
    "total_sperm_count": "1e6",
    "progressive_motility": "%",
    "total_motile_count": "1e6",
    "semen_volume": "mL",
}
MOLAR_MASS_G_MOL: dict[str, float] = {
    # 288.4 g/mol gives 1 nmol/L = 28.84 ng/dL and 1 pg/mL = 3.467 pmol/L; 272.4 g/mol gives 1 pg/mL = 3.671 pmol/L
    "total_testosterone": 288.4,
    "free_testosterone": 288.4,
    "bioavailable_testosterone": 288.4,
    "intratesticular_testosterone": 288.4,
    "estradiol": 272.4,
}
_DRUG_UNITS = {"gonadorelin_concentration": "pg/mL", "hcg_concentration": "IU/L", "recombinant_fsh_concentration": "IU/L"}


def canonical_unit(quantity: str) -> str:
    """The unit hpgsim outputs `quantity` in (drug concentrations: ng/mL unless DESIGN.md says otherwise)."""
    if quantity in CANONICAL:
        return CANONICAL[quantity]
    if quantity.endswith("_concentration"):
        return _DRUG_UNITS.get(quantity, "ng/mL")
    raise UnitError(f"unknown quantity {quantity!r}; use a canonical name from DESIGN.md section 2.")


def to_canonical(quantity: str, value: float, unit: str) -> float:
    """Convert `value` in `unit` to the canonical unit of `quantity` (molar masses where needed).

    Raises:
        UnitError: unknown unit, or one that does not convert to the quantity's canonical unit.
    """
    target = canonical_unit(quantity)
    ureg = registry()
    if unit.replace(" ", "") == target.replace(" ", ""):
        return float(value)
    try:
        q = ureg.Quantity(float(value), _pint_unit(unit, quantity))
    except Exception as exc:
        raise UnitError(f"unit {unit!r} of {quantity} is not a unit pint can read ({exc.__class__.__name__}).") from exc
    try:
        return float(q.to(_pint_unit(target, quantity)).magnitude)
    except pint.DimensionalityError:
        mm = MOLAR_MASS_G_MOL.get(quantity)
        if mm is not None:
            try:
                grams = ureg.Quantity(mm, "g/mol")
                if q.check("[substance]/[length]**3"):
                    return float((q * grams).to(_pint_unit(target, quantity)).magnitude)
                return float((q / grams).to(_pint_unit(target, quantity)).magnitude)
            except pint.DimensionalityError:
                pass
        raise UnitError(f"unit {unit!r} cannot be converted to {target} (the unit of {quantity}).") from None


# A leading count scale: "1e6", "10^6", "10**6", "x10^6", "×10⁶" (pint reads a leading number as a scale factor).
_MILLION = re.compile(r"^\s*(?:[x×]\s*)?(?:1e6|1E6|10\s*(?:\^|\*\*)\s*6|10⁶)(?![0-9])\s*")
# Sperm output in millions: "M/mL", "mill/mL" ("M" elsewhere is molar and stays so).
_SPERM_QUANTITIES = ("sperm_concentration", "total_sperm_count", "total_motile_count")
_SPERM_M = re.compile(r"^\s*(?:M|mill|mio|millions)(?=\s*(?:/|$))")


def _pint_unit(unit: str, quantity: str | None = None) -> str:
    """The unit as pint should read it: counts in millions become `million`, "%" becomes `percent`."""
    u = _MILLION.sub("million", unit.strip(), count=1)
    if quantity in _SPERM_QUANTITIES:
        u = _SPERM_M.sub("million", u, count=1)
    return u.replace("%", "percent")
