"""Shared fixtures. Float64 for JAX is switched on here (an entry point), never at import."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# `hpgsim.fit` sets XLA's backend optimisation level 0 when JAX has not started yet (fit/api.py
# `_entry`), as it has in a fresh `hpgsim fit` process. In a test session JAX starts earlier (engine
# tests), so the session sets the same flag before any import of JAX. On the 34-state model NUTS on the
# three synthetic men of test_fit gives 0, 1, 0 divergent transitions of 300 draws at level 0 and 0, 10,
# 13 at XLA's default level (benchmarks/fit_divergences.py; docs/fit.md).
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")


@pytest.fixture
def write_yaml(tmp_path: Path):
    def _write(text: str, name: str = "p.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return _write
