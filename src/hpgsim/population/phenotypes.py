"""Phenotypes and virtual patients: typical men and log-normal populations drawn from package data."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hpgsim.errors import SpecError
from hpgsim.model.spec import ModelSpec, calibration_overlay, load_model
from hpgsim.yamlfile import read_yaml_file


@dataclass(frozen=True)
class Subgroup:
    """A share of a phenotype's men whose parameters differ by fixed factors (a mixture component).

    For example the ~22% of GnRH-deficient men whose testes make no sperm on gonadotropins.
    """

    name: str
    share: float  # fraction of the phenotype's men, 0 < share < 1
    factors: dict[str, float]  # parameter -> multiplier on the man's drawn value
    source: str


@dataclass(frozen=True)
class Phenotype:
    """A phenotype: covariate distributions and typical parameter values with CVs."""

    name: str
    description: str
    status: str
    source: str
    age: dict[str, float]
    bmi: dict[str, float]
    typical: dict[str, float]  # parameter -> typical value (model default unless overridden)
    cv: dict[str, float]  # parameter -> log-normal CV
    subgroups: tuple[Subgroup, ...] = ()  # the typical man belongs to none of them


@dataclass(frozen=True)
class Patient:
    """One virtual man: a label and his parameter values (by name, in model units).

    Parameters not given take the model's defaults. `age` and `bmi` are parameters too.
    """

    name: str
    parameters: dict[str, float] = field(default_factory=dict)
    phenotype: str | None = None

    def vector(self, spec: ModelSpec) -> np.ndarray:
        """Parameter vector in the spec's order, shape (n_params,).

        Raises:
            SpecError: a parameter the model does not have, or a value that is not finite, negative or above
                the parameter's maximum (the message names the man, the parameter, the value and the fix).
        """
        check_parameters(f"patient {self.name!r}", self.parameters, spec)
        return np.array([self.parameters.get(n, p.value) for n, p in spec.parameters.items()], dtype=float)


def check_parameters(who: str, values: dict[str, Any], spec: ModelSpec) -> None:
    """Refuse unknown names and values outside [0, max] (a share above 1 would make negative flows).

    Names are checked against the whole model, so a man may carry the parameters of drugs that a
    protocol-pruned `spec` leaves out. `who` starts each message (a man's name, or a file and key).
    """
    for k, v in values.items():
        problem = parameter_problem(k, v, spec)
        if problem:
            raise SpecError(f"{who}: {problem}")


def parameter_problem(name: str, value: Any, spec: ModelSpec) -> str | None:
    """What is wrong with `name` = `value` for this model (None if nothing): unknown name, not a finite
    non-negative number, or above the parameter's max."""
    par = spec.parameters.get(name) or load_model().parameters.get(name)  # full model: drugs a pruned spec omits
    if par is None:
        close = difflib.get_close_matches(name, list(load_model().parameters), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return f"unknown parameter {name!r}.{hint} See `hpgsim drugs` and docs/model.md."
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if isinstance(value, bool) or not np.isfinite(x) or x < 0:
        return f"parameter {name!r} = {value!r} must be a finite non-negative number in {par.unit}."
    if par.max is not None and x > par.max:
        return (
            f"parameter {name!r} = {value!r} is above its maximum {par.max:g} ({par.description or name}); "
            f"use a value between 0 and {par.max:g} (the model's value is {par.value:g})."
        )
    return None


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    text = resources.files("hpgsim.data.population").joinpath("phenotypes.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def phenotype_names() -> list[str]:
    return list(_raw())


def get_phenotype(name: str) -> Phenotype:
    """Look up a phenotype by name.

    Raises:
        SpecError: unknown name (the message suggests the closest).
    """
    raw = _raw()
    if name not in raw:
        close = difflib.get_close_matches(name, list(raw), n=1, cutoff=0.4)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SpecError(f"unknown phenotype {name!r}.{hint} Available: {', '.join(raw)} (see `hpgsim phenotypes`).")
    r = raw[name]
    spec = load_model()
    typical = {k: p.value for k, p in spec.parameters.items()}
    cv = {k: float(p.cv) for k, p in spec.parameters.items() if p.cv is not None}
    for pname, pdef in (r.get("parameters") or {}).items():
        if pname not in spec.parameters:
            raise SpecError(f"phenotypes.yaml: phenotype {name!r} sets unknown parameter {pname!r}")
        if "value" in pdef:
            typical[pname] = float(pdef["value"])
        if "factor" in pdef:
            typical[pname] = typical[pname] * float(pdef["factor"])
        if "cv" in pdef:
            cv[pname] = float(pdef["cv"])
    mult = calibration_overlay().get("phenotype_multipliers") or {}
    for key, d in mult.items():
        ph, _, par = key.partition(".")
        if ph == name and par in typical:
            typical[par] = typical[par] * float(d["value"])
    typical["age"] = float(r["age_years"]["median"])
    typical["bmi"] = float(r["bmi_kg_m2"]["median"])
    subgroups = _subgroups(name, r.get("subgroups"), spec)
    return Phenotype(
        name=name,
        description=str(r["description"]),
        status=str(r.get("status", "")),
        source=str(r.get("source", "")),
        age={k: float(v) for k, v in r["age_years"].items()},
        bmi={k: float(v) for k, v in r["bmi_kg_m2"].items()},
        typical=typical,
        cv=cv,
        subgroups=subgroups,
    )


def _subgroups(phenotype: str, raw: Any, spec: ModelSpec) -> tuple[Subgroup, ...]:
    """Parse and check a phenotype's `subgroups` list (errors name the phenotype, subgroup and field)."""
    if raw is None:
        return ()
    where = f"phenotypes.yaml: phenotype {phenotype!r}"
    if not isinstance(raw, list):
        raise SpecError(f"{where}: 'subgroups' must be a list of {{name, share, parameters, source}}, got {raw!r}")
    out = []
    for i, g in enumerate(raw):
        if not isinstance(g, dict) or "name" not in g:
            raise SpecError(f"{where}: subgroup {i + 1} needs a 'name' (and share, parameters, source), got {g!r}")
        label = f"{where}, subgroup {g['name']!r}"
        share = g.get("share")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 1:
            raise SpecError(f"{label}: 'share' must be a fraction between 0 and 1 (e.g. 0.2), got {share!r}")
        factors = {}
        for pname, pdef in (g.get("parameters") or {}).items():
            if pname not in spec.parameters:
                raise SpecError(f"{label}: unknown parameter {pname!r}")
            f = pdef.get("factor") if isinstance(pdef, dict) else None
            if isinstance(f, bool) or not isinstance(f, int | float) or f < 0:
                raise SpecError(f"{label}: parameter {pname!r} needs a non-negative 'factor', got {pdef!r}")
            factors[pname] = float(f)
        if not factors:
            raise SpecError(f"{label}: 'parameters' must change at least one parameter by a factor")
        out.append(Subgroup(name=str(g["name"]), share=float(share), factors=factors, source=str(g.get("source", ""))))
    total = sum(g.share for g in out)
    if total >= 1:
        raise SpecError(f"{where}: the subgroup shares add up to {total:g}; they must leave a share (< 1) for the rest")
    return tuple(out)


def typical_patient(phenotype: str) -> Patient:
    """The phenotype's median man."""
    ph = get_phenotype(phenotype)
    return Patient(name=f"typical {phenotype}", parameters=dict(ph.typical), phenotype=phenotype)


def _truncated_normal(rng: np.random.Generator, d: dict[str, float], n: int) -> np.ndarray:
    lo, hi = d.get("min", -np.inf), d.get("max", np.inf)
    out = rng.normal(d["median"], d.get("sd", 0.0), n)
    bad = (out < lo) | (out > hi)
    while bad.any():
        out[bad] = rng.normal(d["median"], d.get("sd", 0.0), int(bad.sum()))
        bad = (out < lo) | (out > hi)
    return out


def _stream(seed: int, name: str) -> np.random.Generator:
    """The random stream of one named quantity: stable across runs, platforms and model versions."""
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, key])


def sample_patients(phenotype: str, n: int, seed: int = 0) -> list[Patient]:
    """Draw `n` men: age and BMI from truncated normals, parameters log-normal around the typical values.

    The median of each log-normal is the typical value; sigma = sqrt(log(1 + cv^2)).

    Each quantity (age, BMI, each parameter) has its own random stream, keyed by the seed and its name
    (common random numbers): adding a variable parameter to the model, or changing one cv, leaves every
    other man's draws unchanged, so two model versions are compared on the same men.

    A phenotype's subgroups (mixture components) take their shares of the men, chosen by a stream of their
    own; a man in a subgroup has its factors applied to his drawn values and its name in his label.
    """
    if n < 1:
        raise SpecError(f"--n must be at least 1, got {n}.")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SpecError(f"--seed must be a non-negative integer, got {seed!r}; use e.g. --seed 0.")
    ph = get_phenotype(phenotype)
    ages = _truncated_normal(_stream(seed, "age"), ph.age, n)
    bmis = _truncated_normal(_stream(seed, "bmi"), ph.bmi, n)
    names = sorted(ph.cv)
    sig = np.array([np.sqrt(np.log1p(ph.cv[k] ** 2)) for k in names])
    z = np.column_stack([_stream(seed, k).standard_normal(n) for k in names]) if names else np.zeros((n, 0))
    member = _subgroup_members(ph, _stream(seed, "subgroup").random(n)) if ph.subgroups else [None] * n
    patients = []
    for i in range(n):
        params = dict(ph.typical)
        for j, k in enumerate(names):
            params[k] = ph.typical[k] * float(np.exp(sig[j] * z[i, j]))
        params["age"] = float(ages[i])
        params["bmi"] = float(bmis[i])
        label = f"{phenotype} #{i}"
        group = member[i]
        if group is not None:
            for k, f in group.factors.items():
                params[k] *= f
            label += f" ({group.name})"
        patients.append(Patient(name=label, parameters=params, phenotype=phenotype))
    return patients


def _subgroup_members(ph: Phenotype, u: np.ndarray) -> list[Subgroup | None]:
    """Each man's subgroup (None: the main group) from one uniform draw per man."""
    edges = np.cumsum([g.share for g in ph.subgroups])
    return [ph.subgroups[int(np.searchsorted(edges, x, side="right"))] if x < edges[-1] else None for x in u]


def load_patient(path: str | Path) -> Patient:
    """Read a patient file: YAML with `name`, optional `phenotype` and `parameters` (name: value in model units).

    Raises:
        SpecError: missing file, bad YAML, unknown or non-positive parameter.
    """
    p = Path(path)
    raw = read_yaml_file(p, "patient", SpecError)
    if not isinstance(raw, dict):
        raise SpecError(f"{p}: a patient file is a mapping with 'parameters' (and optional 'name', 'phenotype').")
    unknown = set(raw) - {"name", "phenotype", "parameters"}
    if unknown:
        raise SpecError(f"{p}: unknown keys {sorted(unknown)}; allowed: name, phenotype, parameters.")
    base = typical_patient(str(raw["phenotype"])).parameters if raw.get("phenotype") else {}
    spec = load_model()
    params = dict(base)
    for k, v in (raw.get("parameters") or {}).items():
        check_parameters(f"{p}: key 'parameters.{k}'", {k: v}, spec)
        params[k] = float(v)
    return Patient(name=str(raw.get("name", p.stem)), parameters=params, phenotype=raw.get("phenotype"))
