"""The model as data: load the physiology and drug files into one validated :class:`ModelSpec`.

Nothing here computes dynamics. The engine turns a ModelSpec into SBML (CPU engine) and into a
Python/JAX right-hand side; both come from the same expressions, so the model is written once.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from hpgsim.errors import SpecError

_ALLOWED_FUNCS = {"exp", "log", "sqrt", "abs"}


@dataclass(frozen=True)
class Parameter:
    """A model parameter: value in `unit`, where the number came from, between-person CV, and for shares
    and fractions the largest value the equations allow (`max`, inclusive)."""

    name: str
    value: float
    unit: str
    source: str
    description: str = ""
    cv: float | None = None
    owner: str = "physiology"
    max: float | None = None


@dataclass(frozen=True)
class State:
    """An ODE state with its unit."""

    name: str
    unit: str
    description: str = ""
    owner: str = "physiology"


@dataclass(frozen=True)
class Expression:
    """A named algebraic quantity: `expr` is Python syntax over states, parameters and earlier names."""

    name: str
    expr: str
    unit: str
    note: str = ""


@dataclass(frozen=True)
class DoseTarget:
    """Where one dose unit goes: `amount_per_dose_unit` x bioavailability into `state`."""

    state: str
    amount_per_dose_unit: float
    bioavailability: float


@dataclass(frozen=True)
class Drug:
    """A drug: its dose unit, routes (targets), studied dose range and descriptive text."""

    name: str
    drug_class: str
    target: str
    dose_unit: str
    default_route: str
    routes: dict[str, tuple[DoseTarget, ...]]
    studied_min: float
    studied_max: float
    studied_source: str
    concentration_outputs: tuple[str, ...]
    note: str = ""
    caveat: str = ""  # a limit of the drug's model; flagged on every result that uses the drug


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """The whole model: ordered states, parameters, intermediates, rates and observables.

    Attributes:
        states: ODE states in engine order.
        parameters: every parameter by name (physiology first, then drugs).
        intermediates: algebraic quantities in evaluation order (drug concentrations, channels,
            physiology intermediates).
        rates: right-hand side expression per state name.
        observables: canonical outputs and drug concentrations, in output order.
        drugs: the drug library by name.
        time_unit: the model's time unit ("h").
    """

    states: tuple[State, ...]
    parameters: dict[str, Parameter]
    intermediates: tuple[Expression, ...]
    rates: dict[str, str]
    observables: tuple[Expression, ...]
    drugs: dict[str, Drug]
    time_unit: str = "h"

    @property
    def state_names(self) -> list[str]:
        return [s.name for s in self.states]

    @property
    def parameter_names(self) -> list[str]:
        return list(self.parameters)

    @property
    def observable_names(self) -> list[str]:
        return [o.name for o in self.observables]

    def default_parameters(self) -> dict[str, float]:
        return {k: p.value for k, p in self.parameters.items()}

    def digest(self) -> str:
        """A short hash of everything that defines the dynamics (for provenance of results)."""
        payload = {
            "states": self.state_names,
            "parameters": {k: p.value for k, p in self.parameters.items()},
            "intermediates": [(e.name, e.expr) for e in self.intermediates],
            "rates": self.rates,
            "observables": [(e.name, e.expr) for e in self.observables],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: 10x faster


UNCALIBRATED_ENV = "HPGSIM_UNCALIBRATED"  # set (by `hpgsim calibrate`) to ignore calibrated.yaml
# set (by `hpgsim calibrate --cohort-passes`) to a calibrated.yaml of an intermediate fit, read instead of the package's
CALIBRATED_FILE_ENV = "HPGSIM_CALIBRATED_FILE"


def calibration_overlay() -> dict[str, Any]:
    """The contents of data/model/calibrated.yaml ({} if absent or if HPGSIM_UNCALIBRATED is set; the file
    named by HPGSIM_CALIBRATED_FILE instead, if that is set)."""
    if os.environ.get(UNCALIBRATED_ENV):
        return {}
    override = os.environ.get(CALIBRATED_FILE_ENV)
    if override:
        return yaml.load(Path(override).read_text(encoding="utf-8"), Loader=_Loader) or {}
    f = resources.files("hpgsim.data.model").joinpath("calibrated.yaml")
    if not f.is_file():
        return {}
    return _read_yaml("hpgsim.data.model", "calibrated.yaml") or {}


def _apply_calibration(params: dict[str, Parameter], complete: bool) -> None:
    """Overlay data/model/calibrated.yaml (if present): value and provenance of each fitted parameter."""
    cal = calibration_overlay()
    if not cal:
        return
    against = ", ".join(cal.get("against", []))
    for name, d in (cal.get("values") or {}).items():
        if name not in params:
            if complete:
                raise SpecError(f"calibrated.yaml: {name!r} is not a model parameter; rerun `make calibrate`.")
            continue  # a drug parameter of a drug left out of this model
        old = params[name]
        if "anchor" in d:
            source = f"derived in calibration: re-solved so that the {d['anchor']} under the calibrated feedback"
        else:
            source = f"calibrated: against {against} (prior {old.value:g}: {old.source})"
        params[name] = replace(old, value=float(d["value"]), source=source)


@lru_cache(maxsize=64)
def _read_yaml(package: str, name: str) -> Any:
    text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    return yaml.load(text, Loader=_Loader)  # a safe loader (CSafeLoader or SafeLoader)


def _names_in(expr: str, where: str) -> set[str]:
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise SpecError(f"{where}: cannot parse expression {expr!r}: {exc.msg}") from exc
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in _ALLOWED_FUNCS):
                raise SpecError(f"{where}: only {sorted(_ALLOWED_FUNCS)} may be called in {expr!r}")
        elif isinstance(node, ast.Name) and node.id not in _ALLOWED_FUNCS:
            names.add(node.id)
        elif not isinstance(
            node,
            ast.Expression | ast.BinOp | ast.UnaryOp | ast.Constant | ast.Load | ast.operator | ast.unaryop | ast.Name,
        ):
            raise SpecError(f"{where}: unsupported syntax {type(node).__name__} in {expr!r}")
    return names


def _parameter(name: str, raw: dict[str, Any], owner: str, where: str) -> Parameter:
    for key in ("value", "unit", "source"):
        if key not in raw:
            raise SpecError(f"{where}: parameter {name!r} lacks {key!r} (every parameter needs value, unit and source)")
    cv = raw.get("cv")
    upper = raw.get("max")
    if upper is not None and float(raw["value"]) > float(upper):
        raise SpecError(f"{where}: parameter {name!r} has value {raw['value']!r} above its max {upper!r}")
    return Parameter(
        name=name,
        value=float(raw["value"]),
        unit=str(raw["unit"]),
        source=str(raw["source"]),
        description=str(raw.get("description", "")),
        cv=None if cv is None else float(cv),
        owner=owner,
        max=None if upper is None else float(upper),
    )


def _load_drug(
    raw: dict[str, Any], fname: str
) -> tuple[Drug, list[State], list[Parameter], dict[str, str], list[Expression], dict[str, str]]:
    name = raw["name"]
    routes: dict[str, tuple[DoseTarget, ...]] = {}
    for route, rdef in raw["routes"].items():
        routes[route] = tuple(
            DoseTarget(str(t["state"]), float(t["amount_per_dose_unit"]), float(t["bioavailability"])) for t in rdef["targets"]
        )
    states = [State(k, str(v["unit"]), str(v.get("description", "")), owner=name) for k, v in raw.get("states", {}).items()]
    params = [_parameter(k, v, name, fname) for k, v in raw.get("parameters", {}).items()]
    concs = [
        Expression(k, str(v["expr"]), str(v["unit"]), str(v.get("note", "")))
        for k, v in (raw.get("concentrations") or {}).items()
    ]
    studied = raw["studied_dose"]
    drug = Drug(
        name=name,
        drug_class=str(raw["class"]),
        target=str(raw.get("target", "")),
        dose_unit=str(raw["dose_unit"]),
        default_route=str(raw["default_route"]),
        routes=routes,
        studied_min=float(studied["min"]),
        studied_max=float(studied["max"]),
        studied_source=str(studied.get("source", "")),
        concentration_outputs=tuple(c.name for c in concs),
        note=str(raw.get("dose_note", "")),
        caveat=str(raw.get("caveat", "")),
    )
    return drug, states, params, dict(raw.get("rates", {})), concs, dict(raw.get("effects") or {})


def drug_dependencies(drugs: frozenset[str]) -> frozenset[str]:
    """The drugs whose compartments `drugs` need (clomiphene citrate doses into enclomiphene's)."""
    full = load_model()
    needed = set(drugs)
    owner = {s.name: s.owner for s in full.states}
    for d in drugs:
        for targets in full.drugs[d].routes.values():
            for t in targets:
                if owner[t.state] != "physiology":
                    needed.add(owner[t.state])
    return frozenset(needed)


@lru_cache(maxsize=32)
def load_model(include: frozenset[str] | None = None, calibrated: bool = True) -> ModelSpec:
    """Load and validate the packaged model (physiology + drug files).

    Args:
        include: include only these drugs' compartments (and those they dose into); None = every drug.
            A smaller model integrates faster; the physiology is identical.
        calibrated: apply the fitted values of data/model/calibrated.yaml (written by `hpgsim
            calibrate`) over the data files' values; False gives the uncalibrated priors.

    Returns:
        The assembled ModelSpec.

    Raises:
        SpecError: a name is undefined or duplicated, a parameter lacks a source, a state lacks a rate.
    """
    phys = _read_yaml("hpgsim.data.model", "physiology.yaml")
    drug_dir = resources.files("hpgsim.data.drugs")
    drug_files = sorted(p.name for p in drug_dir.iterdir() if p.name.endswith(".yaml"))

    params: dict[str, Parameter] = {}
    for k, v in phys["parameters"].items():
        params[k] = _parameter(k, v, "physiology", "physiology.yaml")
    states = [State(k, str(v["unit"]), str(v.get("description", ""))) for k, v in phys["states"].items()]
    rates = dict(phys["rates"])

    drugs: dict[str, Drug] = {}
    concentrations: list[Expression] = []
    channel_terms: dict[str, list[str]] = {c: [] for c in phys["channels"]}
    for fname in drug_files:
        raw = _read_yaml("hpgsim.data.drugs", fname)
        if include is not None and raw["name"] not in include:
            continue
        drug, dstates, dparams, drates, dconcs, effects = _load_drug(raw, fname)
        if drug.name in drugs:
            raise SpecError(f"{fname}: drug {drug.name!r} defined twice")
        drugs[drug.name] = drug
        states.extend(dstates)
        for p in dparams:
            if p.name in params:
                raise SpecError(f"{fname}: parameter {p.name!r} already defined")
            params[p.name] = p
        rates.update(drates)
        concentrations.extend(dconcs)
        for channel, term in effects.items():
            if channel not in channel_terms:
                raise SpecError(f"{fname}: unknown effect channel {channel!r}; known: {sorted(channel_terms)}")
            channel_terms[channel].append(f"({term})")
    if calibrated:
        _apply_calibration(params, complete=include is None)

    channels: list[Expression] = []
    for cname, cdef in phys["channels"].items():
        terms = channel_terms[cname]
        if not terms:
            expr = "0"
        elif cdef["combine"] == "sum":
            expr = " + ".join(terms)
        elif cdef["combine"] == "complement_product":
            expr = "1 - " + "*".join(f"(1 - {t})" for t in terms)
        else:
            raise SpecError(f"physiology.yaml: channel {cname!r} has unknown combine rule {cdef['combine']!r}")
        channels.append(Expression(cname, expr, str(cdef.get("unit", "1")), str(cdef.get("description", ""))))

    phys_inter = [Expression(k, str(v["expr"]), str(v["unit"]), str(v.get("note", ""))) for k, v in phys["intermediates"].items()]
    intermediates = tuple(concentrations + channels + phys_inter)
    observables = tuple(
        [Expression(k, str(v["expr"]), str(v["unit"]), str(v.get("note", ""))) for k, v in phys["observables"].items()]
        + concentrations
    )
    spec = ModelSpec(
        states=tuple(states),
        parameters=params,
        intermediates=intermediates,
        rates=rates,
        observables=observables,
        drugs=drugs,
        time_unit=str(phys.get("time_unit", "h")),
    )
    _validate(spec)
    return spec


def _validate(spec: ModelSpec) -> None:
    known: set[str] = set()
    for group, names in (("state", spec.state_names), ("parameter", spec.parameter_names)):
        for n in names:
            if n in known:
                raise SpecError(f"model: {group} name {n!r} is used twice")
            known.add(n)
    for e in spec.intermediates:
        missing = _names_in(e.expr, f"intermediate {e.name}") - known
        if missing:
            raise SpecError(f"model: intermediate {e.name!r} uses undefined names {sorted(missing)} (order matters)")
        if e.name in known:
            raise SpecError(f"model: intermediate {e.name!r} clashes with an existing name")
        known.add(e.name)
    for s in spec.state_names:
        if s not in spec.rates:
            raise SpecError(f"model: state {s!r} has no rate law")
    for s, expr in spec.rates.items():
        if s not in spec.state_names:
            raise SpecError(f"model: rate given for unknown state {s!r}")
        missing = _names_in(expr, f"rate of {s}") - known
        if missing:
            raise SpecError(f"model: rate of {s!r} uses undefined names {sorted(missing)}")
    for o in spec.observables:
        missing = _names_in(o.expr, f"observable {o.name}") - known
        if missing:
            raise SpecError(f"model: observable {o.name!r} uses undefined names {sorted(missing)}")
    for d in spec.drugs.values():
        if d.default_route not in d.routes:
            raise SpecError(f"drug {d.name!r}: default route {d.default_route!r} is not among its routes")
        for targets in d.routes.values():
            for t in targets:
                if t.state not in spec.state_names:
                    raise SpecError(f"drug {d.name!r}: dose target {t.state!r} is not a state")
