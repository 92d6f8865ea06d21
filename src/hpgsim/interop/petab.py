"""PEtab (v1) export of the calibration problem: model, study arms, published numbers, priors.

Layout written into a directory::

    problem.yaml  model.xml  conditions.tsv  measurements.tsv  observables.tsv  parameters.tsv  README.md

Choices (README.md in the directory repeats them with counts):

- **One model, doses as parameters.** PEtab v1 allows one SBML model, so every dosing regimen of every
  arm becomes a *dose train* of the portable SBML (:mod:`hpgsim.interop.sbml`): parameters
  ``dose_<drug>_<route>_<k>_{amount,start,interval,n}`` and one event per train. Each condition sets
  all of them (``n = 0`` switches a train off).
- **Pre-equilibration.** Every arm is simulated from its man's untreated steady state: its
  measurements name a pre-equilibration condition ``<arm>_pre`` with the same man and no doses
  (``n = 0``, ``record_baseline = 0``).
- **The man of an arm.** The study population's phenotype sets the parameters that phenotypes change
  through phenotype-specific parameters (``gnrh_capacity__hypogonadotropic_hypogonadism``...; phenotypes
  that keep the default value share ``<parameter>__reference``), and
  the published mean age and BMI (else the phenotype's) set ``age`` and ``bmi``. Like hpgsim's typical
  man, this fits the median man, not the cohort distribution.
- **Statistics.** Means and medians of a quantity at a day are measurements of the observable
  ``obs_<quantity>`` (canonical units). Fold and percent changes from day 0 are measurements of
  ``obs_<quantity>_fold_change`` / ``_percent_change``, which divide by ``<quantity>_day0``, recorded by
  an event at time 0. Proportions, cumulative proportions, median times and observations restricted
  to a subgroup (``among``) cannot be written as PEtab measurements of one trajectory: skipped and
  counted in README.md.
- **Noise.** Normal, sigma = standard error of the published statistic, given per measurement in
  ``noiseParameters``: se; sd/sqrt(n); a 95% CI's width/3.92; IQR/1.349/sqrt(n); range/4/sqrt(n).
  Without a published spread, an assumed between-man CV of 30% (level statistics: 0.3 x |value|/sqrt(n);
  changes: 0.3 x the post/pre ratio, in the statistic's scale, /sqrt(n)).
- **Parameters.** Every model parameter is listed with its nominal value. ``estimate = 1`` for the
  parameters whose source is "provisional" (set by hand, to be calibrated: docs/model.md,
  tools/tune_provisional.py); the rest are fixed. Estimated parameters are on log10 scale with
  bounds nominal/10 .. nominal x 10 and a log-normal prior with median = nominal and sigma =
  sqrt(ln(1 + CV^2)) from the parameter's between-person CV (CV 1 where none is given).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpgsim.errors import SpecError
from hpgsim.interop.sbml import DoseTrain, build_portable_sbml, trains_for
from hpgsim.model.spec import ModelSpec, load_model
from hpgsim.units import to_canonical

LEVEL_STATS = ("mean", "median", "geometric_mean")
CHANGE_STATS = ("fold_change", "percent_change")
ASSUMED_CV = 0.3
DEFAULT_PRIOR_CV = 1.0


def _sid(text: str) -> str:
    s = re.sub(r"\W", "_", text)
    return s if re.match(r"[A-Za-z_]", s) else f"_{s}"


def _slotted(trains: list[DoseTrain]) -> list[DoseTrain]:
    """Rename trains to ``dose_<drug>_<route>_<k>`` (k counts trains of one drug and route in an arm)."""
    seen: Counter[tuple[str, str]] = Counter()
    out = []
    for tr in trains:
        seen[(tr.drug, tr.route)] += 1
        out.append(replace(tr, slot=f"dose_{tr.drug}_{tr.route}_{seen[(tr.drug, tr.route)]}"))
    return out


def _sigma(obs: Any, value: float, n: int, scale: float) -> tuple[float, str]:
    """Standard error of a published statistic (in its own unit) and how it was obtained."""
    root = math.sqrt(max(n, 1))
    if obs.se is not None:
        return float(obs.se), "se"
    if obs.sd is not None:
        return float(obs.sd) / root, "sd/sqrt(n)"
    if obs.ci95 is not None:
        return abs(obs.ci95[1] - obs.ci95[0]) / 3.92, "ci95"
    if obs.iqr is not None:
        return abs(obs.iqr[1] - obs.iqr[0]) / 1.349 / root, "iqr"
    if obs.range is not None:
        return abs(obs.range[1] - obs.range[0]) / 4.0 / root, "range"
    return ASSUMED_CV * scale / root, "assumed CV 30%"


def build_petab_tables(studies: list[Any], spec: ModelSpec | None = None) -> dict[str, Any]:
    """The PEtab tables (DataFrames), the SBML text and a record of what was skipped.

    Args:
        studies: loaded studies (:func:`hpgsim.validation.studies.load_studies`).
        spec: the model (default: every drug).
    """
    from hpgsim.engine.steady import steady_state
    from hpgsim.population.phenotypes import typical_patient
    from hpgsim.simulation import DISCLAIMER

    spec = spec or load_model()
    defaults = spec.default_parameters()
    used_phenotypes = sorted({s.data.population.phenotype for s in studies})
    phenotypes = sorted(set(used_phenotypes) | {"healthy"})
    typical = {ph: typical_patient(ph).parameters for ph in phenotypes}
    varied = sorted(
        k
        for k in defaults
        if k not in ("age", "bmi") and any(abs(typical[ph][k] - defaults[k]) > 1e-12 * abs(defaults[k]) for ph in used_phenotypes)
    )

    # ---- conditions, measurements ----
    slots: dict[str, DoseTrain] = {}
    arm_trains: dict[str, list[DoseTrain]] = {}
    cond_rows: list[dict[str, Any]] = []
    meas_rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    baselines: set[str] = set()
    level_q: set[str] = set()
    for study in studies:
        pop = study.data.population
        ph = pop.phenotype
        age = pop.age_years.typical if pop.age_years is not None else typical[ph]["age"]
        bmi = pop.bmi_kg_m2.typical if pop.bmi_kg_m2 is not None else typical[ph]["bmi"]
        for k, (arm, prot) in enumerate(zip(study.data.arms, study.protocols, strict=True), start=1):
            cid = _sid(f"c_{study.data.id}_{k}")
            trains = _slotted(trains_for(prot, spec))
            arm_trains[cid] = trains
            for tr in trains:
                slots.setdefault(tr.slot, replace(tr, amount=0.0, start_h=0.0, interval_h=24.0, n=0))
            man: dict[str, Any] = {"age": age, "bmi": bmi}
            man.update({p: _phenotype_id(p, ph, typical, defaults) for p in varied})
            cond_rows.append({"conditionId": cid, "conditionName": f"{study.data.id}: {arm.name}", **man})
            cond_rows.append({"conditionId": f"{cid}_pre", "conditionName": f"{study.data.id}: {arm.name} (untreated)", **man})
            for obs in arm.observations:
                n = obs.n or arm.n
                where = {"study": study.data.id, "arm": arm.name, "quantity": obs.quantity, "stat": obs.stat, "day": obs.day}
                if obs.among is not None:
                    skipped.append({**where, "why": "restricted to a subgroup ('among')"})
                    continue
                if obs.stat in LEVEL_STATS:
                    unit = obs.unit or ""
                    try:
                        value = to_canonical(obs.quantity, obs.value, unit) if unit else obs.value
                        factor = value / obs.value if obs.value else to_canonical(obs.quantity, 1.0, unit)
                    except Exception as exc:  # a unit the canonical table cannot convert: say so, skip
                        skipped.append({**where, "why": f"unit not convertible ({exc})"})
                        continue
                    sigma, how = _sigma(obs, obs.value, n, abs(obs.value))
                    oid = f"obs_{obs.quantity}"
                    level_q.add(obs.quantity)
                    sigma *= abs(factor)
                elif obs.stat in CHANGE_STATS:
                    value = float(obs.value)
                    ratio = value if obs.stat == "fold_change" else 1 + value / 100
                    scale = abs(ratio) if obs.stat == "fold_change" else 100 * abs(ratio)
                    sigma, how = _sigma(obs, value, n, scale)
                    oid = f"obs_{obs.quantity}_{obs.stat}"
                    baselines.add(obs.quantity)
                else:
                    skipped.append({**where, "why": f"statistic {obs.stat} is not a measurement of one trajectory"})
                    continue
                if not (sigma > 0 and np.isfinite(sigma)):
                    sigma, how = ASSUMED_CV * max(abs(value), 1e-3) / math.sqrt(max(n, 1)), "assumed CV 30%"
                meas_rows.append(
                    {
                        "observableId": oid,
                        "preequilibrationConditionId": f"{cid}_pre",
                        "simulationConditionId": cid,
                        "measurement": value,
                        "time": float(obs.day or 0.0) * 24.0,
                        "noiseParameters": sigma,
                        "datasetId": _sid(study.data.id),
                        "hpgsim_stat": obs.stat,
                        "hpgsim_sigma_from": how,
                        "hpgsim_n": n,
                    }
                )
    # dose columns: every slot in every condition (n = 0: off); day-0 recording off while pre-equilibrating
    for row in cond_rows:
        cid = row["conditionId"]
        pre = cid.endswith("_pre")
        if baselines:
            row["record_baseline"] = 0 if pre else 1
        mine = {a.slot: a for a in arm_trains[cid.removesuffix("_pre")]}
        for slot in slots:
            given = mine.get(slot)
            row[f"{slot}_amount"] = given.amount if given else 0.0
            row[f"{slot}_start"] = given.start_h if given else 0.0
            row[f"{slot}_interval"] = given.interval_h if given else 24.0
            row[f"{slot}_n"] = 0 if (pre or given is None) else given.n

    # ---- observables ----
    units = {o.name: o.unit for o in spec.observables} | {e.name: e.unit for e in spec.intermediates}
    obs_rows = []
    for q in sorted(level_q):
        obs_rows.append(_observable(f"obs_{q}", f"{q} [{units.get(q, '')}]", q))
    for q in sorted(baselines):
        obs_rows.append(_observable(f"obs_{q}_fold_change", f"{q}: fold change from day 0", f"{q} / {q}_day0"))
        obs_rows.append(_observable(f"obs_{q}_percent_change", f"{q}: % change from day 0", f"100 * ({q} / {q}_day0 - 1)"))
    used = {r["observableId"] for r in meas_rows}
    obs_rows = [r for r in obs_rows if r["observableId"] in used]

    # ---- parameters ----
    par_rows = []
    for name, p in spec.parameters.items():
        if name in ("age", "bmi"):
            continue
        src = p.source.strip().lower()
        provisional = src.startswith("calibrated") or "provisional" in src
        if name in varied:
            ids = {_phenotype_id(name, ph, typical, defaults): ph for ph in used_phenotypes}
            for pid, ph in ids.items():
                label = (
                    f"{name} (reference: phenotypes that keep the default)" if pid.endswith("__reference") else f"{name} ({ph})"
                )
                par_rows.append(_parameter_row(pid, label, typical[ph][name], provisional, p.cv))
        else:
            par_rows.append(_parameter_row(name, p.description or name, defaults[name], provisional, p.cv))

    # ---- model: the typical healthy man's steady state as initial values (pre-equilibration replaces it) ----
    reference = typical_patient("healthy")
    params = reference.vector(spec)
    y0 = steady_state(spec, params, patient=reference.name)
    missing = [q for q in sorted(level_q | baselines) if q not in units]
    if missing:
        raise SpecError(f"PEtab export: the study files use quantities the model does not define: {missing}")
    sbml = build_portable_sbml(
        spec,
        params,
        y0,
        list(slots.values()),
        description=[
            DISCLAIMER,
            f"hpgsim calibration problem (PEtab v1); model digest {spec.digest()}.",
            "Doses are dose trains set per condition; day-0 values are recorded by baseline_event.",
        ],
        baselines=tuple(sorted(baselines)),
    )
    return {
        "sbml": sbml,
        "conditions": pd.DataFrame(cond_rows),
        "measurements": pd.DataFrame(meas_rows),
        "observables": pd.DataFrame(obs_rows),
        "parameters": pd.DataFrame(par_rows),
        "skipped": skipped,
        "phenotypes": used_phenotypes,
        "varied": varied,
    }


def _phenotype_id(name: str, phenotype: str, typical: dict[str, dict[str, float]], defaults: dict[str, float]) -> str:
    """``<name>__<phenotype>`` where the phenotype changes the parameter, else the shared ``<name>__reference``."""
    if abs(typical[phenotype][name] - defaults[name]) > 1e-12 * abs(defaults[name]):
        return f"{name}__{phenotype}"
    return f"{name}__reference"


def _observable(oid: str, name: str, formula: str) -> dict[str, Any]:
    return {
        "observableId": oid,
        "observableName": name,
        "observableFormula": formula,
        "observableTransformation": "lin",
        "noiseFormula": f"noiseParameter1_{oid}",
        "noiseDistribution": "normal",
    }


def _parameter_row(pid: str, name: str, nominal: float, estimate: bool, cv: float | None) -> dict[str, Any]:
    positive = nominal > 0
    est = estimate and positive
    row: dict[str, Any] = {
        "parameterId": pid,
        "parameterName": name,
        "parameterScale": "log10" if positive else "lin",
        "lowerBound": nominal / 10 if positive else nominal - 1.0,
        "upperBound": nominal * 10 if positive else nominal + 1.0,
        "nominalValue": nominal,
        "estimate": int(est),
        "objectivePriorType": "",
        "objectivePriorParameters": "",
    }
    if est:
        sigma = math.sqrt(math.log(1 + (cv if cv else DEFAULT_PRIOR_CV) ** 2))
        row["objectivePriorType"] = "logNormal"
        row["objectivePriorParameters"] = f"{math.log(nominal)!r};{sigma!r}"
    return row


@contextlib.contextmanager
def _quiet_petab_log() -> Iterator[None]:
    """petab's linter logs INFO lines ("Visualization table not available"); keep only its errors."""
    log = logging.getLogger("petab")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def write_petab(out: Path, studies: list[Path] | None = None) -> dict[str, Any]:
    """Write the PEtab problem into the (existing, empty) directory `out` and lint it.

    Args:
        out: target directory.
        studies: study files or folders (default: the packaged study set).

    Returns:
        Counts: conditions, measurements, estimated parameters, skipped observations, lint result.

    Raises:
        SpecError: a study file is invalid; HpgsimError subclasses from loading.
    """
    import petab.v1 as petab

    from hpgsim.validation.studies import load_studies, packaged_study_dir

    loaded = load_studies(list(studies) if studies else [packaged_study_dir()])
    t = build_petab_tables(loaded)
    (out / "model.xml").write_text(t["sbml"], encoding="utf-8")
    t["conditions"].to_csv(out / "conditions.tsv", sep="\t", index=False)
    t["measurements"].to_csv(out / "measurements.tsv", sep="\t", index=False)
    t["observables"].to_csv(out / "observables.tsv", sep="\t", index=False)
    t["parameters"].to_csv(out / "parameters.tsv", sep="\t", index=False)
    (out / "problem.yaml").write_text(
        "format_version: 1\n"
        "parameter_file: parameters.tsv\n"
        "problems:\n"
        "  - sbml_files: [model.xml]\n"
        "    condition_files: [conditions.tsv]\n"
        "    measurement_files: [measurements.tsv]\n"
        "    observable_files: [observables.tsv]\n",
        encoding="utf-8",
    )
    with warnings.catch_warnings(), _quiet_petab_log():
        # petab 0.8 uses pandas features that pandas deprecates; nothing the user can act on
        warnings.simplefilter("ignore", getattr(pd.errors, "Pandas4Warning", FutureWarning))
        warnings.simplefilter("ignore", FutureWarning)
        problem = petab.Problem.from_yaml(str(out / "problem.yaml"))
        lint_errors = petab.lint_problem(problem)
    summary = {
        "studies": len(loaded),
        "conditions": int((~t["conditions"]["conditionId"].str.endswith("_pre")).sum()),
        "measurements": len(t["measurements"]),
        "estimated": int(t["parameters"]["estimate"].sum()),
        "skipped": len(t["skipped"]),
        "lint_ok": not lint_errors,
    }
    (out / "README.md").write_text(_readme(t, summary), encoding="utf-8")
    return summary


def _readme(t: dict[str, Any], summary: dict[str, Any]) -> str:
    from hpgsim.simulation import DISCLAIMER

    meas = t["measurements"]
    by_stat = Counter(meas["hpgsim_stat"]) if len(meas) else Counter()
    by_sigma = Counter(meas["hpgsim_sigma_from"]) if len(meas) else Counter()
    skipped = Counter(s["why"] if not s["why"].startswith("statistic") else f"stat {s['stat']}" for s in t["skipped"])
    lines = [
        "# hpgsim calibration problem (PEtab v1)",
        "",
        DISCLAIMER,
        "",
        f"Written by `hpgsim export petab` from {summary['studies']} study files: {summary['conditions']} arms "
        f"(conditions, each with an untreated pre-equilibration condition `<id>_pre`), {summary['measurements']} "
        f"measurements, {summary['estimated']} estimated parameters. `petab.lint_problem`: "
        f"{'no errors' if summary['lint_ok'] else 'ERRORS (see the linter output)'}.",
        "",
        "## Choices",
        (__doc__ or "").split("Choices (README.md in the directory repeats them with counts):", 1)[-1].strip(),
        "",
        "## Measurements by statistic",
        *[f"- {k}: {v}" for k, v in sorted(by_stat.items())],
        "",
        "## Where each measurement's sigma came from",
        *[f"- {k}: {v}" for k, v in sorted(by_sigma.items())],
        "",
        f"## Skipped observations ({len(t['skipped'])})",
        *[f"- {k}: {v}" for k, v in sorted(skipped.items())],
        "",
        "| study | arm | quantity | stat | day | why |",
        "|---|---|---|---|---|---|",
        *[f"| {s['study']} | {s['arm']} | {s['quantity']} | {s['stat']} | {s['day']} | {s['why']} |" for s in t["skipped"]],
        "",
        "Extra measurement columns `hpgsim_stat`, `hpgsim_sigma_from`, `hpgsim_n` record the published statistic, "
        "how its sigma was obtained and the n used; PEtab tools ignore them.",
        f"Phenotype-specific parameters ({', '.join(t['varied'])}) appear as `<parameter>__<phenotype>` for the "
        f"phenotypes that change them and `<parameter>__reference` for the others ({', '.join(t['phenotypes'])}).",
        "",
    ]
    return "\n".join(lines)
