"""Generate executable functions from a :class:`~hpgsim.model.spec.ModelSpec`.

The model's expressions are emitted once as Python source over an array namespace ``xp`` (NumPy or
jax.numpy), so the NumPy helpers (steady state, observables) and the JAX engine run literally the same
code. The SBML for the CPU engine is generated from the same expressions in :mod:`hpgsim.engine.sbml`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np

from hpgsim.model.spec import ModelSpec


@dataclass(frozen=True)
class ModelFunctions:
    """Functions generated for one array namespace.

    Attributes:
        rhs: ``rhs(t, y, p) -> dy/dt``; y shape (n_states,), p shape (n_params,), time in hours.
        observe: ``observe(y, p) -> array (n_observables, ...)``; y shape (n_states, ...), so a whole
            trajectory (n_states, n_times) is observed at once.
        intermediates: ``intermediates(y, p) -> array (n_intermediates, ...)``.
        source: the generated Python source (for inspection).
    """

    rhs: Callable[..., Any]
    observe: Callable[..., Any]
    intermediates: Callable[..., Any]
    source: str


def _prologue(spec: ModelSpec, indent: str) -> list[str]:
    lines = [f"{indent}{name} = y[{i}]" for i, name in enumerate(spec.state_names)]
    lines += [f"{indent}{name} = p[{i}]" for i, name in enumerate(spec.parameter_names)]
    lines += [f"{indent}{e.name} = {e.expr}" for e in spec.intermediates]
    return lines


def generate_source(spec: ModelSpec) -> str:
    """Python source defining rhs, observe and intermediates for `spec` (array namespace `xp`)."""
    ind = "    "
    out = ["def rhs(t, y, p):"]
    out += _prologue(spec, ind)
    # "+ 0*y[0]" gives constant expressions the shape of a state, so that stack() also works when y
    # holds whole trajectories (shape (n_states, n_times)).
    out.append(f"{ind}return stack([" + ", ".join(f"({spec.rates[s]}) + 0*y[0]" for s in spec.state_names) + "])")
    out.append("")
    out.append("def observe(y, p):")
    out += _prologue(spec, ind)
    out.append(f"{ind}return stack([" + ", ".join(f"({o.expr}) + 0*y[0]" for o in spec.observables) + "])")
    out.append("")
    out.append("def intermediates(y, p):")
    out += _prologue(spec, ind)
    out.append(f"{ind}return stack([" + ", ".join(f"({e.name}) + 0*y[0]" for e in spec.intermediates) + "])")
    return "\n".join(out) + "\n"


def compile_functions(spec: ModelSpec, xp: ModuleType) -> ModelFunctions:
    """Compile the generated source against array namespace `xp` (numpy or jax.numpy)."""
    src = generate_source(spec)
    namespace: dict[str, Any] = {
        "exp": xp.exp,
        "log": xp.log,
        "sqrt": xp.sqrt,
        "abs": xp.abs,
        "stack": xp.stack,
    }
    code = compile(src, f"<hpgsim model {spec.digest()}>", "exec")
    exec(code, namespace)
    return ModelFunctions(namespace["rhs"], namespace["observe"], namespace["intermediates"], src)


@lru_cache(maxsize=4)
def numpy_functions(spec: ModelSpec) -> ModelFunctions:
    """The NumPy build of the model functions (cached per spec)."""
    return compile_functions(spec, np)
