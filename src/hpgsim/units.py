"""Units at the boundaries: parsing "26 week" or "1 mg" with pint and converting to engine units.

Only boundary code (protocol loading, study files, CLI) calls these functions; inside the engine numbers
are plain floats in the units declared in the model data files.
"""

from __future__ import annotations

import logging
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
