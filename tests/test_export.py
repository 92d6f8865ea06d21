"""SBML export checked by its ecosystem: libsbml's consistency and unit checks, and a second simulator (COPASI).

The exported file must mean the same thing to COPASI (LSODA, through basico) as the model means to
hpgsim's CPU engine: trajectories of the canonical quantities agree to a relative 1e-3 (measured:
about 1e-8, see docs/interop.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from hpgsim.engine.schedule import build_schedule
from hpgsim.engine.steady import steady_state
from hpgsim.interop.sbml import check_sbml, export_sbml
from hpgsim.interop.sbmlmath import UnitInference, UnitMismatch, parse, pint_unit
from hpgsim.population.phenotypes import typical_patient
from hpgsim.simulation import as_protocol, model_for, observe_states, solve_states

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


def compare_with_copasi(protocol: dict, phenotype: str = "healthy", step_h: float = 2.0) -> dict[str, float]:
    """Max relative difference per canonical quantity between COPASI on the exported file and hpgsim.

    Outputs are every `step_h` hours starting 1 h after day 0 (never at a dose time, where the engine
    records the pre-dose value and simulators differ in which side of the event they report). The
    relative difference uses max(|value|, 1e-6 x the quantity's largest value) as the scale, so that
    drug concentrations that decay to ~0 between doses are compared on their own scale.
    """
    import basico

    prot = as_protocol(protocol)
    man = typical_patient(phenotype)
    text = export_sbml(prot, patient=man)
    spec = model_for(prot)
    params = man.vector(spec)
    y0 = steady_state(spec, params)
    times = np.arange(1.0, prot.duration_h, step_h)
    states = solve_states(spec, params, y0, build_schedule(spec, prot), np.concatenate([[0.0], times]), rtol=1e-10)[1:]
    ref = observe_states(spec, params, states, times)
    dm = basico.load_model_from_string(text)
    try:
        df = basico.run_time_course(
            model=dm,
            values=list(times),
            duration=float(times[-1]),
            r_tol=1e-10,
            a_tol=1e-12,
            max_steps=1_000_000,
            use_sbml_id=True,
        )
    finally:
        basico.remove_datamodel(dm)
    assert np.allclose(df.index.to_numpy(), times)
    missing = [c for c in ref.columns if c not in df.columns]
    assert not missing, missing
    got = df[list(ref.columns)].to_numpy()
    exp = ref.to_numpy()
    scale = np.maximum(np.abs(exp), 1e-6 * np.abs(exp).max(axis=0))
    rel = np.abs(got - exp) / scale
    return dict(zip(ref.columns, rel.max(axis=0), strict=True))


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_copasi_reproduces_hpgsim_trajectories(name):
    diffs = compare_with_copasi(PROTOCOLS[name])
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
    diffs = compare_with_copasi(prot, phenotype="secondary_hypogonadism", step_h=6.0)
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
