"""Reading a user's YAML file (protocol, patient, study) with one clear error on failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hpgsim.errors import HpgsimError


def read_yaml_file(path: str | Path, kind: str, error: type[HpgsimError]) -> Any:
    """Parse a YAML file.

    Args:
        path: the file.
        kind: what the file is ("protocol", "patient", "study"), for the message.
        error: the HpgsimError subclass to raise.

    Raises:
        error: the file is missing, not text, or not valid YAML (with line and column).
    """
    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: {kind} file not found. Check the path (it is relative to the current directory).")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise error(
            f"{p}: not valid YAML{line} ({getattr(exc, 'problem', exc)}). Check indentation and that lists use '- '."
        ) from exc
    except UnicodeDecodeError as exc:
        raise error(f"{p}: not a text file ({exc}).") from exc
