"""Generate SBML (Level 3 Version 2) from a ModelSpec with python-libsbml.

States become parameters with rate rules, intermediates become assignment rules, parameters stay
constant parameters; every element carries its unit from the data files as SBO-free annotation text
(notes). This is the model the CPU engine (libRoadRunner) runs.
"""

from __future__ import annotations

from functools import lru_cache

import libsbml
import numpy as np

from hpgsim.errors import SpecError
from hpgsim.model.spec import ModelSpec


def _formula(expr: str, where: str) -> libsbml.ASTNode:
    # Python syntax -> SBML L3 infix: only '**' differs for the operators we allow.
    text = expr.replace("**", "^")
    settings = libsbml.L3ParserSettings()
    settings.setParseLog(libsbml.L3P_PARSE_LOG_AS_LN)  # Python's log is the natural log
    ast = libsbml.parseL3FormulaWithSettings(text, settings)
    if ast is None:
        raise SpecError(f"SBML generation: cannot parse {where}: {expr!r}: {libsbml.getLastParseL3Error()}")
    return ast


def _check(code: int, what: str) -> None:
    if code != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise SpecError(f"SBML generation failed at {what}: {libsbml.OperationReturnValue_toString(code)}")


def build_sbml(spec: ModelSpec, parameters: np.ndarray | None = None, initial_state: np.ndarray | None = None) -> str:
    """Return the SBML document (string) for `spec`.

    Args:
        spec: the model.
        parameters: shape (n_params,), values to write (default: the spec's values).
        initial_state: shape (n_states,), initial values of the states (default 0).
    """
    doc = libsbml.SBMLDocument(3, 2)
    model = doc.createModel()
    model.setId("hpgsim_male_hpg_axis")
    model.setName("hpgsim: male hypothalamic-pituitary-gonadal axis, drugs and spermatogenesis")
    model.setTimeUnits("hour")
    ud = model.createUnitDefinition()
    ud.setId("hour")
    u = ud.createUnit()
    u.setKind(libsbml.UNIT_KIND_SECOND)
    u.setExponent(1)
    u.setScale(0)
    u.setMultiplier(3600)

    pvals = np.asarray(parameters if parameters is not None else [p.value for p in spec.parameters.values()], dtype=float)
    for (name, p), v in zip(spec.parameters.items(), pvals, strict=True):
        par = model.createParameter()
        _check(par.setId(name), name)
        par.setValue(float(v))
        par.setConstant(True)
        par.setNotes(f"<body xmlns='http://www.w3.org/1999/xhtml'><p>unit: {_esc(p.unit)}; source: {_esc(p.source)}</p></body>")
    y0 = np.zeros(len(spec.states)) if initial_state is None else np.asarray(initial_state, dtype=float)
    for s, v in zip(spec.states, y0, strict=True):
        par = model.createParameter()
        _check(par.setId(s.name), s.name)
        par.setValue(float(v))
        par.setConstant(False)
        par.setNotes(f"<body xmlns='http://www.w3.org/1999/xhtml'><p>state; unit: {_esc(s.unit)}</p></body>")
    for e in spec.intermediates:
        par = model.createParameter()
        _check(par.setId(e.name), e.name)
        par.setConstant(False)
        rule = model.createAssignmentRule()
        rule.setVariable(e.name)
        _check(rule.setMath(_formula(e.expr, e.name)), e.name)
    for s in spec.states:
        rule = model.createRateRule()
        rule.setVariable(s.name)
        _check(rule.setMath(_formula(spec.rates[s.name], f"rate of {s.name}")), s.name)
    return libsbml.writeSBMLToString(doc)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@lru_cache(maxsize=2)
def default_sbml(spec: ModelSpec) -> str:
    """The engine SBML with default parameters (cached per spec)."""
    return build_sbml(spec)
