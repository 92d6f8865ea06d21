"""Exception tree for hpgsim.

Every error raised on bad user input is an :class:`HpgsimError`; the CLI turns it into a one-paragraph
message and exit code 2. Messages say what is wrong, where (file, key), the offending value and the fix.
"""

from __future__ import annotations


class HpgsimError(Exception):
    """Base class of every error hpgsim raises on purpose."""


class SpecError(HpgsimError):
    """A model, drug or phenotype specification is invalid (package data or a user's patient file)."""


class UnitError(HpgsimError):
    """A quantity is missing its unit, has an unknown unit, or one of the wrong dimension."""


class ProtocolError(HpgsimError):
    """A protocol file (or an inline protocol) is invalid."""


class SimulationError(HpgsimError):
    """The ODE solver failed; the message names the patient and the time reached."""


class FitError(HpgsimError):
    """A calibration or personal fit could not be carried out."""
