"""PEtab export of the calibration problem (work in progress)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpgsim.errors import HpgsimError


def write_petab(out: Path, studies: list[Path] | None = None) -> dict[str, Any]:
    """Write the PEtab problem into `out` (not yet available)."""
    raise HpgsimError("hpgsim export petab is not available yet.")
