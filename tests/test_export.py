"""SBML export checked by its ecosystem: libsbml's consistency and unit checks, and a second simulator (COPASI).

The exported file must mean the same thing to COPASI (LSODA, through basico) as the model means to
hpgsim's CPU engine: trajectories of the canonical quantities agree to a relative 1e-3 (measured:
1e-9 to 1e-6, see docs/interop.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from hpgsim.engine.steady import steady_state
from hpgsim.interop.check import compare_with_copasi
from hpgsim.interop.sbml import check_sbml, export_sbml
from hpgsim.interop.sbmlmath import UnitInference, UnitMismatch, parse, pint_unit
from hpgsim.population.phenotypes import typical_patient
from hpgsim.simulation import as_protocol, model_for

# petab 0.8 uses pandas features that pandas deprecates (Pandas4Warning) when it reads and lints tables
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

PROTOCOLS = {
    "anastrozole_daily": {"duration": "5 week", "regimens": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 day"}]},
    "te_weekly_hcg": {
        "duration": "5 week",
        "regimens": [
            {"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week"},
            {"drug": "hcg", "dose": "500 IU", "every": "2 day"},
        ],
    },
    "gonadorelin_twice_weekly": {
        "duration": "4 week",
        "regimens": [{"drug": "gonadorelin", "dose": "100 ug", "every": "3.5 day"}],
    },
}


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_copasi_reproduces_hpgsim_trajectories(name):
    diffs = compare_with_copasi(PROTOCOLS[name], typical_patient("healthy"))
    worst = max(diffs, key=lambda k: diffs[k])
    assert diffs[worst] <= 1e-3, (worst, diffs[worst])
    # the drug acted: its concentration is among the compared quantities
    assert any(k.endswith("_concentration") for k in diffs)


@pytest.mark.slow
def test_copasi_reproduces_a_half_year_combined_protocol_in_a_hypogonadal_man():
    prot = {
        "duration": "26 week",
        "regimens": [
            {"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week", "stop": "12 week"},
            {"drug": "anastrozole", "dose": "1 mg", "every": "1 day"},
            {"drug": "hcg", "dose": "500 IU", "every": "2 day", "start": "4 week"},
            {"drug": "gonadorelin", "dose": "100 ug", "at": ["10 day", "10.5 day", "30 day"]},
        ],
    }
    diffs = compare_with_copasi(prot, typical_patient("secondary_hypogonadism"), step_h=6.0)
    worst = max(diffs, key=lambda k: diffs[k])
    assert diffs[worst] <= 1e-3, (worst, diffs[worst])


@pytest.mark.parametrize("protocol", [None, PROTOCOLS["te_weekly_hcg"]])
def test_exported_sbml_passes_libsbml_checks_including_units(protocol):
    text = export_sbml(protocol)
    assert check_sbml(text) == []
    import libsbml

    doc = libsbml.readSBMLFromString(text)
    model = doc.getModel()
    # every parameter has units; every constant parameter its SBO term and a source in its notes
    for p in model.getListOfParameters():
        assert p.isSetUnits(), p.getId()
        if p.getConstant() and not p.getId().startswith("dose_"):
            assert p.getSBOTermID() == "SBO:0000002"
            assert "source:" in p.getNotesString(), p.getId()
    assert model.getTimeUnits() == "u_hour"
    n_events = model.getNumEvents()
    assert n_events == (0 if protocol is None else 2)


def test_unit_checks_are_real_a_wrong_unit_is_reported():
    import re

    text = export_sbml(PROTOCOLS["te_weekly_hcg"])
    bad = re.sub(r'(<parameter [^>]*id="t_volume"[^>]*units=")u_liter"', r'\1u_hour"', text)
    assert bad != text
    findings = check_sbml(bad)
    assert findings and any(code == 10533 for _, code, _ in findings)


def test_literals_get_the_units_that_make_an_expression_consistent():
    units = {"c": pint_unit("mg"), "v": pint_unit("L"), "x": pint_unit("IU/L"), "n": pint_unit("1"), "k": pint_unit("IU/L")}
    inf = UnitInference(units)
    tree = parse("1000*c/v", "test")
    inf.balance(tree, pint_unit("ng/mL"), "test")
    lit = tree.children[0]
    assert lit.kind == "num" and lit.unit is not None
    # 1000 (ng/mL)/(mg/L) is the number 1: the value is unchanged, the unit explains it
    from hpgsim.interop.sbmlmath import registry

    assert registry().Quantity(1000.0, lit.unit).to("dimensionless").magnitude == pytest.approx(1.0)
    # a Hill term with a dimensioned base gets a dimensionless base
    hill = parse("x**n/(x**n + k**n)", "hill")
    inf.balance(hill, pint_unit("1"), "hill")
    with pytest.raises(UnitMismatch, match="no number in it can carry"):
        inf.balance(parse("x*v", "bad"), pint_unit("mg"), "bad")
    with pytest.raises(UnitMismatch):
        inf.balance(parse("c + v", "bad sum"), pint_unit("mg"), "bad sum")
    # scale errors are caught too (libsbml's own unit check compares kinds, not always scales)
    with pytest.raises(UnitMismatch, match="no number in it can carry"):
        inf.balance(parse("c/v", "scale"), pint_unit("ng/mL"), "scale")


def test_dose_events_follow_the_protocol_schedule():
    import libsbml

    prot = {
        "duration": "3 week",
        "regimens": [
            {"drug": "hcg", "dose": "250 IU", "every": "2 day", "start": "1 day", "stop": "10 day"},
            {"drug": "gonadorelin", "dose": "10 ug", "at": ["0 h", "5 h", "30 h"]},
        ],
    }
    model = libsbml.readSBMLFromString(export_sbml(prot)).getModel()
    val = {p.getId(): p.getValue() for p in model.getListOfParameters()}
    assert val["dose_hcg_1_start"] == 24.0 and val["dose_hcg_1_interval"] == 48.0
    assert val["dose_hcg_1_n"] == 5  # days 1, 3, 5, 7, 9 (none at or after stop)
    assert val["dose_hcg_1_amount"] == 250.0
    # irregular explicit times: one train per time
    assert [val[f"dose_gonadorelin_{k}_start"] for k in (1, 2, 3)] == [0.0, 5.0, 30.0]
    assert model.getNumEvents() == 4


runner = CliRunner()


def test_cli_export_sbml_writes_a_checked_file(tmp_path, write_yaml):
    from hpgsim.cli import app

    p = write_yaml("duration: 2 week\nregimens:\n  - {drug: anastrozole, dose: 1 mg, every: 1 day}\n")
    out = tmp_path / "model.xml"
    r = runner.invoke(app, ["export", "sbml", "--protocol", str(p), "--phenotype", "subfertile", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "0 finding(s)" in r.output
    assert out.read_text(encoding="utf-8").startswith("<?xml")


def test_cli_export_sbml_bad_input_exits_2_and_writes_nothing(tmp_path):
    from hpgsim.cli import app

    out = tmp_path / "model.xml"
    r = runner.invoke(app, ["export", "sbml", "--phenotype", "helthy", "-o", str(out)])
    assert r.exit_code == 2
    assert "unknown phenotype" in r.output and "healthy" in r.output
    assert not out.exists()
    r = runner.invoke(app, ["export", "sbml", "-o", str(tmp_path / "no" / "model.xml")])
    assert r.exit_code == 2 and "does not exist" in r.output
    assert list(tmp_path.iterdir()) == []


# ---- PEtab -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def petab_dir(tmp_path_factory):
    from hpgsim.interop.petab import write_petab

    out = tmp_path_factory.mktemp("petab")
    summary = write_petab(out)
    return out, summary


def test_petab_problem_loads_and_passes_the_linter(petab_dir):
    import petab.v1 as petab

    out, summary = petab_dir
    assert summary["lint_ok"]
    problem = petab.Problem.from_yaml(str(out / "problem.yaml"))
    assert not petab.lint_problem(problem)
    assert {"model.xml", "conditions.tsv", "measurements.tsv", "observables.tsv", "parameters.tsv", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    # every arm of the packaged studies is a condition with its untreated pre-equilibration condition
    from hpgsim.validation.studies import load_studies, packaged_study_dir

    studies = load_studies([packaged_study_dir()])
    n_arms = sum(len(s.data.arms) for s in studies)
    n_obs = sum(len(a.observations) for s in studies for a in s.data.arms)
    cond = problem.condition_df
    assert len(cond) == 2 * n_arms
    # every published observation is either a measurement or listed as skipped (with its reason)
    assert summary["measurements"] + summary["skipped"] == n_obs
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert f"## Skipped observations ({summary['skipped']})" in readme
    meas = problem.measurement_df
    assert (meas["noiseParameters"].astype(float) > 0).all()
    assert set(meas["preequilibrationConditionId"]) <= set(cond.index)
    # the model carries the dose trains and passes libsbml's unit checks
    assert check_sbml((out / "model.xml").read_text(encoding="utf-8")) == []


def test_petab_parameters_estimate_the_provisional_ones_with_lognormal_priors(petab_dir):
    import math

    import petab.v1 as petab

    out, _ = petab_dir
    par = petab.Problem.from_yaml(str(out / "problem.yaml")).parameter_df
    from hpgsim.model.spec import load_model

    spec = load_model()
    for pid, row in par.iterrows():
        base = str(pid).split("__")[0]
        src = spec.parameters[base].source.lower()
        calibratable = "provisional" in src or src.startswith("calibrated")
        assert bool(row["estimate"]) == (calibratable and row["nominalValue"] > 0), pid
        if row["estimate"]:
            assert row["objectivePriorType"] == "logNormal"
            mu, sigma = (float(x) for x in row["objectivePriorParameters"].split(";"))
            assert mu == pytest.approx(math.log(row["nominalValue"]))
            assert sigma > 0
            assert row["lowerBound"] < row["nominalValue"] < row["upperBound"]
    # phenotype-specific parameters: the hypogonadotropic man's GnRH capacity is his own parameter
    assert par.loc["gnrh_capacity__hypogonadotropic_hypogonadism", "nominalValue"] < 0.1


def test_petab_condition_reproduces_hpgsim_for_a_study_arm(petab_dir):
    """Coviello 2005, TE 200 mg weekly + hCG 500 IU every other day: the condition's dose trains and the
    recorded day-0 value give the same ITT percent change as hpgsim (RoadRunner on the PEtab model)."""
    import petab.v1 as petab
    import roadrunner

    from hpgsim.model.spec import load_model
    from hpgsim.population.phenotypes import Patient
    from hpgsim.simulation import simulate
    from hpgsim.validation.studies import load_studies, packaged_study_dir

    out, _ = petab_dir
    problem = petab.Problem.from_yaml(str(out / "problem.yaml"))
    cid = "c_Coviello2005_4"
    cond = problem.condition_df.loc[cid].drop("conditionName")
    nominal = problem.parameter_df["nominalValue"]
    values = {k: float(nominal[v]) if isinstance(v, str) else float(v) for k, v in cond.items()}
    spec = load_model()
    man = Patient("arm man", {k: values.get(k, p.value) for k, p in spec.parameters.items()}, "healthy")
    y0 = steady_state(spec, man.vector(spec))
    # apply the condition and the pre-equilibrated state to the model itself (as a PEtab tool does before
    # the simulation starts, so that the dose events at time 0 see their triggers become true)
    import libsbml

    doc = libsbml.readSBMLFromString((out / "model.xml").read_text(encoding="utf-8"))
    model = doc.getModel()
    for k, v in [*values.items(), *zip(spec.state_names, y0, strict=True)]:
        model.getParameter(k).setValue(float(v))
    rr = roadrunner.RoadRunner(libsbml.writeSBMLToString(doc))
    rr.integrator.relative_tolerance = 1e-10
    rr.integrator.absolute_tolerance = 1e-12
    rr.selections = ["time", "intratesticular_testosterone", "intratesticular_testosterone_day0"]
    res = rr.simulate(0.0, 21 * 24.0, 2)
    itt_end, itt_day0 = float(res[-1, 1]), float(res[-1, 2])
    study = next(s for s in load_studies([packaged_study_dir()]) if s.data.id == "Coviello2005")
    ref = simulate(study.protocols[3], patient=man, rtol=1e-10).observables["intratesticular_testosterone"]
    assert itt_day0 == pytest.approx(float(ref.iloc[0]), rel=1e-6)
    assert itt_end == pytest.approx(float(ref.loc[21.0]), rel=1e-4)
    meas = problem.measurement_df
    row = meas[(meas.simulationConditionId == cid) & (meas.observableId == "obs_intratesticular_testosterone_percent_change")]
    assert len(row) == 1 and float(row["time"].iloc[0]) == 21 * 24.0


def test_cli_export_petab_one_study_and_bad_input(tmp_path):
    from hpgsim.cli import app
    from hpgsim.validation.studies import packaged_study_dir

    out = tmp_path / "pe"
    r = runner.invoke(app, ["export", "petab", str(packaged_study_dir() / "Leder2004.yaml"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "petab lint: passed" in r.output and (out / "problem.yaml").is_file()
    r = runner.invoke(app, ["export", "petab", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "pe2")])
    assert r.exit_code == 2, r.output
    assert not (tmp_path / "pe2").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["pe"]  # no temporary directory left behind


def test_plain_roadrunner_loop_recipe_reproduces_hpgsim():
    """The loop of docs/interop.md: resetAll() (fires the time-0 doses), then the man's parameters and
    physiology states; the file's events give the doses."""
    import roadrunner

    from hpgsim.population.phenotypes import sample_patients
    from hpgsim.simulation import simulate

    prot = as_protocol(PROTOCOLS["te_weekly_hcg"])
    spec = model_for(prot)
    rr = roadrunner.RoadRunner(export_sbml(prot))
    rr.integrator.relative_tolerance = 1e-10
    rr.integrator.absolute_tolerance = 1e-12
    phys = [i for i, s in enumerate(spec.states) if s.owner == "physiology"]
    for man in sample_patients("healthy", 2, seed=2):
        p = man.vector(spec)
        y0 = steady_state(spec, p)
        rr.resetAll()
        rr.setValues(spec.parameter_names, [float(v) for v in p])
        rr.setValues([spec.state_names[i] for i in phys], [float(y0[i]) for i in phys])
        rr.selections = ["time", "intratesticular_testosterone", "total_testosterone"]
        out = rr.simulate(0.0, prot.duration_h, int(prot.duration_days) + 1)
        ref = simulate(prot, man, rtol=1e-10).observables
        for j, q in enumerate(["intratesticular_testosterone", "total_testosterone"], start=1):
            # days 1.. (day 0 is a dose time: hpgsim reports the pre-dose value there)
            np.testing.assert_allclose(out[1:, j], ref[q].to_numpy()[1:], rtol=1e-6)
