"""Validation machinery: cohorts with inclusion filters, statistics per observation, scoring, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hpgsim.cli import app
from hpgsim.engine.steady import steady_state
from hpgsim.errors import SpecError
from hpgsim.simulation import model_for, observe_states
from hpgsim.validation.run import draw_cohort, run_study
from hpgsim.validation.score import score_study, summarize
from hpgsim.validation.studies import validate_study

STUDY = {
    "id": "Tiny2026",
    "citation": "synthetic",
    "evidence": "abstract",
    "population": {
        "description": "d",
        "phenotype": "healthy",
        "age_years": {"mean": 30, "sd": 3},
        "inclusion": [{"quantity": "total_testosterone", "unit": "nmol/L", "max": 20}],
    },
    "arms": [
        {
            "name": "TE then stop",
            "n": 20,
            "protocol": {
                "duration": "20 week",
                "regimens": [{"drug": "testosterone_enanthate", "dose": "200 mg", "every": "1 week", "stop": "8 week"}],
            },
            "observations": [
                {"quantity": "total_testosterone", "unit": "nmol/L", "day": 0, "stat": "mean", "value": 15, "sd": 4},
                {"quantity": "total_testosterone", "unit": "nmol/L", "day": 28, "stat": "mean", "value": 35, "sd": 10},
                {"quantity": "lh", "unit": "IU/L", "day": 28, "stat": "fold_change", "value": 0.05},
                {
                    "quantity": "sperm_concentration",
                    "unit": "1e6/mL",
                    "stat": "median_time_to",
                    "below": 10,
                    "from_day": 0,
                    "value": 50,
                },
                {
                    "quantity": "sperm_concentration",
                    "unit": "1e6/mL",
                    "day": 56,
                    "stat": "proportion_below",
                    "threshold": 5,
                    "value": 0.6,
                },
                {
                    "quantity": "sperm_concentration",
                    "unit": "1e6/mL",
                    "day": 140,
                    "stat": "mean",
                    "value": 30,
                    "among": {"quantity": "sperm_concentration", "unit": "1e6/mL", "day": 56, "below": 100},
                },
            ],
        }
    ],
}


def test_cohort_respects_inclusion_filters_and_is_seeded():
    st = validate_study(STUDY, "tiny.yaml")
    a = draw_cohort(st, 0, 6, seed=1)
    b = draw_cohort(st, 0, 6, seed=1)
    assert [m.parameters for m in a] == [m.parameters for m in b]
    assert all(20 < m.parameters["age"] < 40 for m in a)


def test_nearly_impossible_filter_is_a_clear_error():
    raw = json.loads(json.dumps(STUDY))
    raw["population"]["inclusion"] = [{"quantity": "total_testosterone", "unit": "ng/dL", "max": 50}]
    with pytest.raises(SpecError, match="nearly impossible"):
        draw_cohort(validate_study(raw, "tiny.yaml"), 0, 3, seed=0, max_draws=3)


def test_run_and_score_a_study():
    st = validate_study(STUDY, "tiny.yaml")
    rows = run_study(st, n=8, seed=0, processes=1)
    assert [r["stat"] for r in rows] == [o["stat"] for o in STUDY["arms"][0]["observations"]]
    assert all(
        set(r) >= {"study", "arm", "quantity", "unit", "day", "stat", "observed", "simulated", "simulated_ci95", "n_virtual"}
        for r in rows
    )
    by = {(r["quantity"], r["stat"], r["day"]): r for r in rows}
    t0 = by[("total_testosterone", "mean", 0)]["simulated"]
    assert 10 < t0 < 20  # nmol/L, the observation's own unit
    assert by[("total_testosterone", "mean", 28)]["simulated"] > 1.3 * t0  # trough, 7 days after a dose
    assert by[("lh", "fold_change", 28)]["simulated"] < 0.2
    assert 20 < by[("sperm_concentration", "median_time_to", None)]["simulated"] < 90
    lo, hi = by[("total_testosterone", "mean", 0)]["simulated_ci95"]
    assert lo <= t0 <= hi
    scored = score_study(st, rows)
    assert all(isinstance(r["within"], bool) for r in scored)
    change_row = scored[1]
    assert change_row["rule"] == "change" and change_row["direction_right"] is True
    s = summarize(scored)
    assert s["observations"] == 6 and s["directions"] >= 2


def test_scoring_rules_on_known_numbers():
    st = validate_study(STUDY, "tiny.yaml")
    rows = [
        {"simulated": 16.0},  # day-0 level: within 20% of 15
        {"simulated": 26.0},  # change +10 vs observed +20 with SE hypot(10/sqrt20, 4/sqrt20)=2.4 -> tol max(4.7, 5, 0.75)=5 -> no
        {"simulated": 0.14},  # fold 0.14 vs 0.05: tol max(0, 0.2375, 0.1) -> within
        {"simulated": 66.0},  # median time 66 vs 50: > 30% -> no
        {"simulated": 0.75},  # proportion: Wilson(0.6, 20) = 0.39-0.78, widened by 0.05 -> within
        {"simulated": None},
    ]
    rows = [dict(r, study="Tiny2026", arm="TE then stop") for r in rows]
    got = [r["within"] for r in score_study(st, rows)]
    assert got == [True, False, True, False, True, False]


def test_validate_cli_writes_json_and_rejects_bad_files(tmp_path):
    import yaml

    good = tmp_path / "Tiny2026.yaml"
    small = json.loads(json.dumps(STUDY))
    small["arms"][0]["protocol"]["duration"] = "4 week"
    small["arms"][0]["observations"] = small["arms"][0]["observations"][:3]
    good.write_text(yaml.safe_dump(small))
    out = tmp_path / "out.json"
    runner = CliRunner()
    report = tmp_path / "report.html"
    res = runner.invoke(app, ["validate", str(good), "--json", str(out), "--report", str(report), "--n", "4", "--processes", "1"])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert len(data) == 3 and data[0]["study"] == "Tiny2026" and data[0]["n_virtual"] == 4
    page = report.read_text()
    assert "Tiny2026" in page and "data:image/png;base64," in page and "Within:" in page
    # An observation hpgsim cannot read is listed and left out; the rest of the file is validated,
    # the JSON keeps the bad row in its place without a simulated value, and the exit code is 2.
    bad = tmp_path / "Bad.yaml"
    small["arms"][0]["observations"][0]["stat"] = "average"
    bad.write_text(yaml.safe_dump(small))
    out2 = tmp_path / "out2.json"
    report2 = tmp_path / "report2.html"
    res = runner.invoke(
        app, ["validate", str(bad), "--json", str(out2), "--report", str(report2), "--n", "4", "--processes", "1"]
    )
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "observation 1" in text and "'average'" in text and "1 problem(s)" in text
    data2 = json.loads(out2.read_text())
    assert [r["quantity"] for r in data2] == [r["quantity"] for r in data]
    assert data2[0]["simulated"] is None and "stat" in data2[0]["error"] and data2[0]["observed"] == 15
    assert all("error" not in r and r["simulated"] is not None for r in data2[1:])
    page2 = report2.read_text()
    assert "Not simulated: 1 observations" in page2 and "<th>error</th>" in page2 and "average" in page2
    # A whole file that cannot be read is skipped; the other files in the folder are still validated.
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "A.yaml").write_text(good.read_text())
    (folder / "B.yaml").write_text(
        "id: B\ncitation: c\nevidence: abstract\npopulation: {description: d, phenotype: healthyy}\narms: []\n"
    )
    out3 = tmp_path / "out3.json"
    res = runner.invoke(app, ["validate", str(folder), "--json", str(out3), "--n", "4", "--processes", "1"])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "B.yaml" in text and "file skipped" in text and "Did you mean 'healthy'" in text
    assert json.loads(out3.read_text()) == data  # same draws as the file validated alone
    # Nothing readable at all: exit 2 and no file written.
    res = runner.invoke(app, ["validate", str(folder / "B.yaml"), "--json", str(tmp_path / "out4.json")])
    assert res.exit_code == 2 and not (tmp_path / "out4.json").exists()


def test_lenient_loading_leaves_out_bad_arms_and_observations_and_restores_file_order():
    from hpgsim.validation.studies import in_file_order, validate_study_leniently

    raw = json.loads(json.dumps(STUDY))
    arm = raw["arms"][0]
    arm["observations"][1]["unit"] = "furlongs"  # does not convert
    arm["observations"][2]["quantity"] = "dihydrotestosterone"  # not a canonical quantity
    del arm["observations"][4]["threshold"]  # a proportion without its threshold
    second = json.loads(json.dumps(arm))
    second["name"] = "exemestane"
    second["protocol"]["regimens"][0]["drug"] = "exemestane"  # a drug hpgsim lacks
    raw["arms"].append(second)
    st, problems, notes = validate_study_leniently(raw, "x.yaml")
    assert len(problems) == 4 and notes == []
    assert any("observation 2" in p and "furlongs" in p for p in problems)
    assert any("observation 3" in p and "dihydrotestosterone" in p for p in problems)
    assert any("observation 5" in p and "threshold" in p for p in problems)
    assert any("arm 'exemestane'" in p and "unknown drug" in p for p in problems)
    assert [a.name for a in st.data.arms] == ["TE then stop"]
    assert [o.stat for o in st.data.arms[0].observations] == ["mean", "median_time_to", "mean"]
    assert st.shape == (6, 6) and len(st.omitted) == 3 + 6
    rows = [{"quantity": o.quantity, "simulated": 1.0} for o in st.data.arms[0].observations]
    merged = in_file_order(st, rows)
    assert len(merged) == 12
    assert [r["simulated"] for r in merged[:6]] == [1.0, None, None, 1.0, None, 1.0]
    assert merged[2]["quantity"] == "dihydrotestosterone" and "dihydrotestosterone" in merged[2]["error"]
    assert all(r["arm"] == "exemestane" and "exemestane" in r["error"] for r in merged[6:])
    # A valid file is the strict result, with nothing omitted.
    st2, problems2, _ = validate_study_leniently(STUDY, "x.yaml")
    assert problems2 == [] and st2.omitted == () and st2.data == validate_study(STUDY, "x.yaml").data
    # Problems of the whole file still raise, with the strict message.
    raw3 = json.loads(json.dumps(STUDY))
    raw3["population"]["phenotype"] = "healthyy"
    with pytest.raises(SpecError, match="Did you mean 'healthy'"):
        validate_study_leniently(raw3, "x.yaml")
    raw4 = json.loads(json.dumps(STUDY))
    raw4["arms"][0]["protocol"]["regimens"][0]["drug"] = "exemestane"
    with pytest.raises(SpecError, match="no arm with a valid observation"):
        validate_study_leniently(raw4, "x.yaml")


def test_output_resolution_follows_the_observation_days():
    from hpgsim.validation.run import output_step_h
    from hpgsim.validation.studies import load_study, packaged_study_dir

    d = packaged_study_dir()
    assert output_step_h(load_study(d / "IVLHRH_PK_men.yaml"), 0) == 1 / 60  # peak GnRH at 2 min
    assert output_step_h(load_study(d / "hCG6000_Desensitization.yaml"), 0) == 0.25  # T at 4 h
    assert output_step_h(load_study(d / "Leder2004.yaml"), 0) == 24.0


def test_packaged_studies_run_through_the_whole_pipeline():
    from hpgsim.validation.studies import load_study, packaged_study_dir

    d = packaged_study_dir()
    for name in ("Mauras2000.yaml", "Loves2013.yaml"):
        st = load_study(d / name)
        scored = score_study(st, run_study(st, n=5, seed=2, processes=1))
        assert len(scored) == sum(len(a.observations) for a in st.data.arms)
        assert all(r["simulated"] is not None and r["n_virtual"] == 5 for r in scored)


@pytest.mark.slow
def test_full_study_set_runs_and_directions_hold():
    from hpgsim.validation.studies import load_studies, packaged_study_dir

    scored = []
    for st in load_studies([packaged_study_dir()]):
        scored.extend(score_study(st, run_study(st, n=12, seed=0, processes=2)))
    s = summarize(scored)
    assert s["observations"] == 128
    assert s["direction_fraction"] >= 0.9  # before calibration: 60/61 at n = 30 (docs/validation.md)


def test_cohort_arrays_interpolate_like_numpy():
    from hpgsim.validation.run import Cohort

    days = np.array([0.0, 1.0, 2.0, 5.0])
    frames = [pd.DataFrame({"lh": v}, index=pd.Index(days, name="day")) for v in ([1.0, 2.0, 4.0, 8.0], [3.0, 3.0, 1.0, 0.0])]
    men = Cohort.from_frames(frames)
    for day in (0.0, 0.5, 2.0, 3.7, 5.0, 9.0):
        expected = [np.interp(day, days, f["lh"].to_numpy()) for f in frames]
        assert np.allclose(men.at("lh", day), expected)
    assert np.array_equal(men.take(np.array([1, 1])).trajectories("lh"), np.stack([frames[1]["lh"]] * 2))


def test_inclusion_filters_screen_a_noisy_lab_so_cohorts_regress_to_the_mean():
    """Men enter on one screening lab: some whose true T is above an entry maximum get in (their
    screening value was low), so the day-0 mean sits closer to the cut than a noise-free filter gives."""
    raw = json.loads(json.dumps(STUDY))
    raw["population"]["inclusion"] = [{"quantity": "total_testosterone", "unit": "ng/dL", "max": 400}]
    st = validate_study(raw, "tiny.yaml")
    men = draw_cohort(st, 0, 40, seed=3)
    spec = model_for(st.protocols[0])
    true_t = []
    for m in men:
        p = m.vector(spec)
        true_t.append(
            float(observe_states(spec, p, steady_state(spec, p)[None, :], np.array([0.0]))["total_testosterone"].iloc[0])
        )
    above = np.mean(np.array(true_t) > 400)
    assert 0.0 < above < 0.5


def test_lenient_loading_ignores_unknown_keys_with_a_note_and_drops_unknown_filters():
    from hpgsim.validation.studies import validate_study_leniently

    raw = json.loads(json.dumps(STUDY))
    raw["doi"] = "10.1/x"
    raw["arms"][0]["design"] = "open label"
    raw["arms"][0]["observations"][0]["stdev"] = 4  # misspelt: the row keeps no spread, with a note
    raw["population"]["inclusion"].append({"quantity": "dht", "max": 3})
    st, problems, notes = validate_study_leniently(raw, "x.yaml")
    assert sorted(n.split("key ")[1].split(" ")[0] for n in notes) == [
        "'arms.1.design'",
        "'arms.1.observations.1.stdev'",
        "'doi'",
    ]
    assert len(problems) == 1 and "filter 2" in problems[0] and "'dht'" in problems[0] and "dropped" in problems[0]
    assert [f.quantity for f in st.data.population.inclusion] == ["total_testosterone"]
    assert st.omitted == () and len(st.data.arms[0].observations) == 6
    # The strict loader refuses all of these.
    with pytest.raises(SpecError):
        validate_study(raw, "x.yaml")
    raw2 = json.loads(json.dumps(STUDY))
    raw2["population"]["inclusion"].append({"quantity": "dht", "max": 3})
    with pytest.raises(SpecError, match=r"filter 2.*'dht'"):
        validate_study(raw2, "x.yaml")


def test_a_concentration_of_a_drug_not_given_is_a_row_without_value_not_a_crash():
    raw = json.loads(json.dumps(STUDY))
    raw["arms"][0]["protocol"]["duration"] = "2 week"
    raw["arms"][0]["observations"] = [
        {"quantity": "total_testosterone", "unit": "nmol/L", "day": 0, "stat": "mean", "value": 15},
        {"quantity": "anastrozole_concentration", "unit": "ng/mL", "day": 7, "stat": "mean", "value": 20},
    ]
    rows = run_study(validate_study(raw, "x.yaml"), n=3, seed=0, processes=1)
    assert rows[0]["simulated"] is not None and "error" not in rows[0]
    assert rows[1]["simulated"] is None and "anastrozole_concentration is not an output" in rows[1]["error"]
    scored = score_study(validate_study(raw, "x.yaml"), rows)
    assert scored[1]["within"] is False and scored[1]["rule"] == "no simulated value"


def test_a_study_whose_simulation_fails_keeps_its_rows_and_the_others_run(tmp_path, monkeypatch):
    import yaml

    import hpgsim.validation.run as vrun

    small = json.loads(json.dumps(STUDY))
    small["arms"][0]["protocol"]["duration"] = "2 week"
    small["arms"][0]["observations"] = small["arms"][0]["observations"][:2]
    (tmp_path / "A.yaml").write_text(yaml.safe_dump(small))
    small["id"] = "Impossible2026"
    (tmp_path / "B.yaml").write_text(yaml.safe_dump(small))
    real = vrun.run_study

    def failing(study, *args, **kwargs):
        if study.id == "Impossible2026":
            raise SpecError(f"{study.source}: only 0 of 100 virtual healthy men pass the inclusion filters")
        return real(study, *args, **kwargs)

    monkeypatch.setattr(vrun, "run_study", failing)
    out = tmp_path / "out.json"
    res = CliRunner().invoke(app, ["validate", str(tmp_path), "--json", str(out), "--n", "3", "--processes", "1"])
    assert res.exit_code == 2 and "not simulated" in res.output
    rows = json.loads(out.read_text())
    assert [r["study"] for r in rows] == ["Tiny2026"] * 2 + ["Impossible2026"] * 2
    assert all(r["simulated"] is not None and "error" not in r for r in rows[:2])
    assert all(r["simulated"] is None and "only 0 of 100" in r["error"] for r in rows[2:])
