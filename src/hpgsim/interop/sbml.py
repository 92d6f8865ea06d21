"""Portable SBML export: the model the CPU engine runs, with units, sources and dose events.

The engine's SBML (:mod:`hpgsim.engine.sbml`) is built for speed and carries units only as notes.
The exported file is generated from the same :class:`~hpgsim.model.spec.ModelSpec` and adds what other
tools need:

- a UnitDefinition for every unit of the model files, on every parameter, and units on every number
  in the math (see :mod:`hpgsim.interop.sbmlmath`), so libsbml's unit checks pass;
- notes with each parameter's description, source and between-person CV, SBO:0000002 on parameters,
  and ``bqbiol:isDescribedBy`` links for sources that cite a PubMed id;
- initial values = the man's untreated steady state;
- dose events. Each regimen becomes one or more *dose trains* (start, interval, number of doses,
  amount in the drug's dose unit): parameters ``<slot>_start``, ``<slot>_interval``, ``<slot>_n``,
  ``<slot>_amount`` and a counter ``<slot>_given``; one event per train fires at
  ``time >= start + given*interval`` while ``given < n`` and adds the amount (times the drug file's
  conversion and bioavailability) to the dosing compartment(s). Dose times are therefore exactly
  ``start + k*interval``, as in the engine's schedule, and a file with a year of daily doses still has
  one event per regimen. The engine adds doses between integration segments; the events do the same.

States stay SBML parameters with rate rules (as in the engine): the model has no reactions, and
concentrations of hormones in different fluids share no compartment.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import libsbml
import numpy as np

from hpgsim.errors import SpecError
from hpgsim.interop.sbmlmath import PUnit, UnitInference, parse, pint_unit, registry, to_infix
from hpgsim.model.spec import ModelSpec, load_model

if TYPE_CHECKING:
    from hpgsim.population.phenotypes import Patient
    from hpgsim.protocol.schema import Protocol

MODEL_ID = "hpgsim_male_hpg_axis"
_XHTML = "http://www.w3.org/1999/xhtml"


@dataclass(frozen=True)
class DoseTrain:
    """Doses of one regimen at ``start_h + k*interval_h`` for k = 0 .. n-1.

    Attributes:
        slot: SBML id prefix of the train's parameters and event.
        drug: drug name; route: its route; targets: (state, amount per dose unit, bioavailability).
        dose_unit: the drug's dose unit; amount: dose per administration in that unit.
        start_h, interval_h: first dose time and spacing (hours); n: number of doses.
    """

    slot: str
    drug: str
    route: str
    dose_unit: str
    targets: tuple[tuple[str, float, float], ...]
    amount: float
    start_h: float
    interval_h: float
    n: int


def _is_regular(times: tuple[float, ...]) -> float | None:
    if len(times) < 2:
        return None
    steps = np.diff(np.asarray(times))
    if np.allclose(steps, steps[0], rtol=0, atol=1e-9) and steps[0] > 0:
        return float(steps[0])
    return None


def trains_for(protocol: Protocol | None, spec: ModelSpec) -> list[DoseTrain]:
    """The dose trains of a protocol's regimens (explicit irregular times: one train per time)."""
    if protocol is None:
        return []
    out: list[DoseTrain] = []
    used: dict[str, int] = {}
    for reg in protocol.regimens:
        if not reg.times_h:
            continue
        drug = spec.drugs[reg.drug]
        targets = tuple((t.state, t.amount_per_dose_unit, t.bioavailability) for t in drug.routes[reg.route])
        if reg.interval_h is not None:
            parts = [(reg.times_h[0], reg.interval_h, len(reg.times_h))]
        else:
            step = _is_regular(reg.times_h)
            parts = [(reg.times_h[0], step, len(reg.times_h))] if step else [(t, 24.0, 1) for t in reg.times_h]
        for start, interval, n in parts:
            used[reg.drug] = used.get(reg.drug, 0) + 1
            slot = f"dose_{reg.drug}_{used[reg.drug]}"
            out.append(DoseTrain(slot, reg.drug, reg.route, drug.dose_unit, targets, reg.dose, start, interval, n))
    return out


# ---- units ------------------------------------------------------------------------------------

_KINDS: list[tuple[dict[str, float], int, str]] = [
    ({"[length]": 3}, libsbml.UNIT_KIND_LITRE, "liter"),
    ({"[length]": 1}, libsbml.UNIT_KIND_METRE, "meter"),
    ({"[mass]": 1}, libsbml.UNIT_KIND_GRAM, "gram"),
    ({"[time]": 1}, libsbml.UNIT_KIND_SECOND, "second"),
    ({"[substance]": 1}, libsbml.UNIT_KIND_MOLE, "mole"),
    ({"[cell_count]": 1}, libsbml.UNIT_KIND_ITEM, "cells"),
    # SBML has no kind for international units of biological activity: they are declared dimensionless
    ({"[biological_activity]": 1}, libsbml.UNIT_KIND_DIMENSIONLESS, "international_unit"),
    ({}, libsbml.UNIT_KIND_DIMENSIONLESS, "dimensionless"),
]


class _Units:
    """UnitDefinitions of one SBML model, created on first use (one per distinct pint unit)."""

    def __init__(self, model: libsbml.Model) -> None:
        self.model = model
        self.ids: dict[tuple[tuple[str, float], ...], str] = {}

    def id(self, u: PUnit) -> str:
        items = tuple(sorted((str(k), float(v)) for k, v in u._units.items()))  # type: ignore[arg-type]
        if not items:
            return "dimensionless"
        if items in self.ids:
            return self.ids[items]
        sid = (
            "u_"
            + "_".join((n if e == 1 else f"{n}{_exp(e)}") for n, e in items if e > 0)
            + "".join(f"_per_{n}" + ("" if e == -1 else _exp(-e)) for n, e in items if e < 0)
        )
        sid = re.sub(r"\W", "_", sid).replace("u__per", "u_per")
        ud = self.model.createUnitDefinition()
        _ok(ud.setId(sid), sid)
        ud.setName(f"{u:~P}" if items else "dimensionless")
        ureg = registry()
        for name, exp in items:
            dims = dict(ureg.Quantity(1.0, name).dimensionality)
            found = [(kind, base) for want, kind, base in _KINDS if dims == want]
            if not found:
                raise SpecError(f"SBML export: no SBML unit kind for {name!r}")
            kind, base = found[0]
            mult = float(ureg.Quantity(1.0, name).to(base).magnitude)
            unit = ud.createUnit()
            unit.setKind(kind)
            unit.setExponent(exp)
            scale = math.log10(mult)
            if abs(scale - round(scale)) < 1e-12:
                unit.setScale(round(scale))
                unit.setMultiplier(1.0)
            else:
                unit.setScale(0)
                unit.setMultiplier(mult)
        self.ids[items] = sid
        return sid


def _exp(e: float) -> str:
    return str(int(e)) if float(e).is_integer() else str(e).replace(".", "p")


def _ok(code: int, what: str) -> None:
    if code != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise SpecError(f"SBML export failed at {what}: {libsbml.OperationReturnValue_toString(code)}")


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _notes(el: libsbml.SBase, lines: list[str]) -> None:
    body = "".join(f"<p>{_esc(x)}</p>" for x in lines if x)
    _ok(el.setNotes(f"<body xmlns='{_XHTML}'>{body}</body>"), f"notes of {el.getId()}")


def _pubmed(el: libsbml.SBase, text: str) -> None:
    ids = re.findall(r"PMID[:\s]*(\d{6,9})", text)
    if not ids:
        return
    el.setMetaId(f"meta_{el.getId()}")
    for pmid in dict.fromkeys(ids):
        cv = libsbml.CVTerm(libsbml.BIOLOGICAL_QUALIFIER)
        cv.setBiologicalQualifierType(libsbml.BQB_IS_DESCRIBED_BY)
        cv.addResource(f"http://identifiers.org/pubmed/{pmid}")
        el.addCVTerm(cv)


# ---- the document -----------------------------------------------------------------------------


def build_portable_sbml(
    spec: ModelSpec,
    parameters: np.ndarray,
    initial_state: np.ndarray,
    trains: list[DoseTrain] | None = None,
    *,
    description: list[str] | None = None,
    observables: bool = True,
    baselines: tuple[str, ...] = (),
) -> str:
    """The portable SBML document for `spec` (see the module docstring).

    Args:
        spec: the model.
        parameters: shape (n_params,), values in the spec's order and units.
        initial_state: shape (n_states,), the state at t = 0 (before any dose).
        trains: dose trains (each becomes parameters and one event).
        description: lines for the model's notes.
        observables: also define the canonical observables as assignment rules.
        baselines: quantities whose day-0 value is recorded in ``<name>_day0`` by an event at time 0
            (while ``record_baseline`` > 0.5), for fold and percent changes (PEtab observables).

    Raises:
        SpecError: an expression's units cannot be made consistent (a units error in the model files).
    """
    trains = trains or []
    doc = libsbml.SBMLDocument(3, 2)
    model = doc.createModel()
    model.setId(MODEL_ID)
    model.setName("hpgsim: male hypothalamic-pituitary-gonadal axis, drugs and spermatogenesis")
    units = _Units(model)
    ureg = registry()
    hour = pint_unit("h")
    model.setTimeUnits(units.id(hour))
    _notes(model, description or [])

    names: dict[str, PUnit] = {"time": hour}
    for name, p in spec.parameters.items():
        names[name] = pint_unit(p.unit)
    for s in spec.states:
        names[s.name] = pint_unit(s.unit)
    for e in spec.intermediates:
        names[e.name] = pint_unit(e.unit)
    extra_obs = [o for o in spec.observables if o.name not in names] if observables else []
    for o in extra_obs:
        names[o.name] = pint_unit(o.unit)
    names["record_baseline"] = ureg.dimensionless
    for q in baselines:
        names[f"{q}_day0"] = names[q]
    for tr in trains:
        names[f"{tr.slot}_amount"] = pint_unit(tr.dose_unit)
        for key in ("start", "interval"):
            names[f"{tr.slot}_{key}"] = hour
        for key in ("n", "given"):
            names[f"{tr.slot}_{key}"] = ureg.dimensionless
    infer = UnitInference(names)

    def math(expr: str, unit: PUnit | None, where: str) -> libsbml.ASTNode:
        tree = parse(expr, where)
        if unit is None:
            infer.infer(tree, None, where)
        else:
            infer.balance(tree, unit, where)
        text = to_infix(tree, units.id)
        settings = libsbml.L3ParserSettings()
        settings.setModel(model)
        settings.setParseUnits(True)
        ast = libsbml.parseL3FormulaWithSettings(text, settings)
        if ast is None:
            raise SpecError(f"SBML export: cannot write {where}: {libsbml.getLastParseL3Error()} in {text!r}")
        return ast

    def parameter(pid: str, value: float | None, constant: bool, unit: PUnit, notes: list[str]) -> libsbml.Parameter:
        par = model.createParameter()
        _ok(par.setId(pid), pid)
        if value is not None:
            par.setValue(float(value))
        par.setConstant(constant)
        _ok(par.setUnits(units.id(unit)), f"units of {pid}")
        if constant:
            par.setSBOTerm(2)  # SBO:0000002 quantitative systems description parameter
        _notes(par, notes)
        return par

    pvals = np.asarray(parameters, dtype=float)
    for (name, p), v in zip(spec.parameters.items(), pvals, strict=True):
        par = parameter(
            name,
            v,
            True,
            names[name],
            [
                p.description,
                f"unit: {p.unit}",
                f"source: {p.source}",
                f"between-person CV (log-normal): {p.cv:g}" if p.cv is not None else "",
                f"model part: {p.owner}",
            ],
        )
        _pubmed(par, p.source)
    y0 = np.asarray(initial_state, dtype=float)
    for s, v in zip(spec.states, y0, strict=True):
        parameter(s.name, v, False, names[s.name], [f"state: {s.description}", f"unit: {s.unit}", f"model part: {s.owner}"])
    for e in (*spec.intermediates, *extra_obs):
        parameter(e.name, None, False, names[e.name], [f"= {e.expr}", f"unit: {e.unit}", e.note])
        rule = model.createAssignmentRule()
        rule.setVariable(e.name)
        _ok(rule.setMath(math(e.expr, names[e.name], e.name)), e.name)
    for s in spec.states:
        rule = model.createRateRule()
        rule.setVariable(s.name)
        _ok(rule.setMath(math(spec.rates[s.name], names[s.name] / hour, f"rate of {s.name}")), s.name)
    for tr in trains:
        _add_train(model, tr, parameter, math, names)
    if baselines:
        _add_baselines(model, baselines, parameter, math, names)
    doc.checkInternalConsistency()
    return libsbml.writeSBMLToString(doc)


def _add_train(model: libsbml.Model, tr: DoseTrain, parameter: Any, math: Any, names: dict[str, PUnit]) -> None:
    s = tr.slot
    what = f"{tr.drug} ({tr.route})"
    parameter(f"{s}_amount", tr.amount, True, names[f"{s}_amount"], [f"{what}: amount per dose, in {tr.dose_unit}"])
    parameter(f"{s}_start", tr.start_h, True, names[f"{s}_start"], [f"{what}: time of the first dose (h)"])
    parameter(f"{s}_interval", tr.interval_h, True, names[f"{s}_interval"], [f"{what}: dosing interval (h)"])
    parameter(f"{s}_n", float(tr.n), True, names[f"{s}_n"], [f"{what}: number of doses"])
    parameter(f"{s}_given", 0.0, False, names[f"{s}_given"], [f"{what}: doses given so far (changed by the event)"])
    ev = model.createEvent()
    _ok(ev.setId(f"{s}_event"), s)
    ev.setName(f"dose of {what}")
    ev.setUseValuesFromTriggerTime(False)  # simultaneous doses into one compartment add up
    trig = ev.createTrigger()
    trig.setPersistent(True)
    trig.setInitialValue(False)  # a dose at t = 0 fires
    _ok(trig.setMath(math(f"time >= {s}_start + {s}_given*{s}_interval and {s}_given < {s}_n", None, f"trigger of {s}")), s)
    for state, per_unit, bio in tr.targets:
        ea = ev.createEventAssignment()
        ea.setVariable(state)
        _ok(ea.setMath(math(f"{state} + {s}_amount*{per_unit!r}*{bio!r}", names[state], f"dose of {s} into {state}")), s)
    ea = ev.createEventAssignment()
    ea.setVariable(f"{s}_given")
    _ok(ea.setMath(math(f"{s}_given + 1", names[f"{s}_given"], f"counter of {s}")), s)
    _notes(
        ev,
        [
            f"{tr.drug}, route {tr.route}: {tr.amount:g} {tr.dose_unit} at start + k*interval, k = 0..n-1; "
            + ", ".join(f"{st} += amount x {pu:g} x bioavailability {b:g}" for st, pu, b in tr.targets)
        ],
    )


def _add_baselines(model: libsbml.Model, quantities: tuple[str, ...], parameter: Any, math: Any, names: dict[str, PUnit]) -> None:
    parameter("record_baseline", 1.0, True, names["record_baseline"], ["1: record day-0 values at time 0; 0: do not"])
    for q in quantities:
        parameter(f"{q}_day0", 0.0, False, names[q], [f"value of {q} at time 0, before any dose (set by baseline_event)"])
    ev = model.createEvent()
    ev.setId("baseline_event")
    ev.setName("record day-0 values")
    ev.setUseValuesFromTriggerTime(True)  # the values before any dose event at time 0 executes
    trig = ev.createTrigger()
    trig.setPersistent(True)
    trig.setInitialValue(False)
    _ok(trig.setMath(math("time >= 0 and record_baseline > 0.5", None, "baseline trigger")), "baseline")
    for q in quantities:
        ea = ev.createEventAssignment()
        ea.setVariable(f"{q}_day0")
        _ok(ea.setMath(math(q, names[q], f"baseline of {q}")), q)


def check_sbml(text: str, units: bool = True) -> list[tuple[str, int, str]]:
    """libsbml's consistency checks (with unit checks): (severity, error id, message) for each finding."""
    doc = libsbml.readSBMLFromString(text)
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, units)
    doc.checkConsistency()
    out = []
    for i in range(doc.getNumErrors()):
        e = doc.getError(i)
        out.append((e.getSeverityAsString(), int(e.getErrorId()), e.getMessage().strip()))
    return out


def export_sbml(
    protocol: Protocol | str | Any | None = None,
    patient: Patient | None = None,
    phenotype: str = "healthy",
    prune: bool = True,
) -> str:
    """The portable SBML of one man (untreated steady state as initial values) and a protocol's doses.

    Args:
        protocol: a Protocol, a protocol file path or mapping; None = untreated, every drug's
            compartments included (add doses yourself).
        patient: the man (his parameters are written); default the phenotype's typical man.
        phenotype: used when `patient` is None.
        prune: with a protocol, include only its drugs' compartments (as the engine does).

    Returns:
        The SBML Level 3 Version 2 document as a string.
    """
    from hpgsim.engine.steady import steady_state
    from hpgsim.population.phenotypes import typical_patient
    from hpgsim.simulation import DISCLAIMER, as_protocol, model_for

    prot = as_protocol(protocol) if protocol is not None else None
    man = patient if patient is not None else typical_patient(phenotype)
    spec = model_for(prot, prune) if prot is not None else load_model()
    params = man.vector(spec)
    y0 = steady_state(spec, params, patient=man.name)
    trains = trains_for(prot, spec)
    lines = [
        DISCLAIMER,
        f"Exported by hpgsim; model digest {spec.digest()}; man {man.name!r} (phenotype {man.phenotype}).",
        "Time in hours. Initial values: the man's untreated steady state.",
        f"Protocol: {prot.name}, {prot.duration_h / 24:g} days." if prot is not None else "No protocol: no dose events.",
        "Doses: one event per dose train (start, interval, n, amount parameters; see each event's notes).",
        "International units (IU) have no SBML unit kind: they are declared dimensionless.",
    ]
    return build_portable_sbml(spec, params, y0, trains, description=lines)
