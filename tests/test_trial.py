"""Virtual trials: statistics, responder logic, subgroups, the trial-file schema and its errors, and a tiny
end-to-end trial through the CLI (all files, reproducible with a seed, nothing written on bad input)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hpgsim.cli import app
from hpgsim.errors import SpecError
from hpgsim.trial import stats as ts
from hpgsim.trial.report import FILES
from hpgsim.trial.schema import validate_trial

runner = CliRunner()

TINY = """
name: tiny
seed: 3
n_per_arm: 6
bootstrap: 200
population: {phenotype: {subfertile: 0.5, subfertile_low_te: 0.5}}
arms:
  - {name: control, control: true, protocol: {duration: 4 week}}
  - {name: AI, protocol: ai.yaml}
endpoints:
  - {quantity: estradiol, day: 28, statistic: percent_change}
  - {quantity: total_testosterone, day: 28, statistic: mean_change, unit: nmol/L}
  - {quantity: estradiol, day: 28, statistic: proportion_below, threshold: 10, unit: pg/mL}
  - {quantity: anastrozole_concentration, day: 28, statistic: mean}
responders:
  - name: T/E2 >= 10
    all: [{quantity: te_ratio, day: 28, min: 10}]
  - name: E2 low
    safety: true
    any: [{quantity: estradiol, day: 28, unit: pmol/L, below: 36.71}]
subgroups:
  - {name: baseline T/E2, quantity: te_ratio, cuts: [10]}
"""
AI = "name: AI 1 mg\nduration: 4 week\nregimens:\n  - {drug: anastrozole, dose: 1 mg, every: 1 day}\n"


def _design(**changes: object) -> dict:
    import yaml

    raw = yaml.safe_load(TINY)
    raw["arms"][1]["protocol"] = yaml.safe_load(AI)
    raw.update(changes)
    return raw


# --- statistics ---------------------------------------------------------------------------------


def test_bootstrap_ci_covers_a_known_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    f = ts.estimator("mean_change")
    hits = 0
    for _ in range(100):
        later = rng.normal(5.0, 2.0, 120)
        est, lo, hi, reps = ts.estimate_with_ci(f, np.zeros(120), later, 400, rng)
        assert lo < est < hi and reps.shape == (400,)
        hits += lo <= 5.0 <= hi
    assert 85 <= hits <= 100


def test_percent_change_is_the_change_of_group_means():
    f = ts.estimator("percent_change")
    assert float(f(np.array([10.0, 30.0]), np.array([30.0, 30.0]))) == pytest.approx(50.0)
    g = ts.estimator("proportion_below", 10.0)
    assert float(g(np.zeros(4), np.array([5.0, 9.9, 10.0, 20.0]))) == pytest.approx(0.5)


def test_difference_vs_control_ci_covers_the_true_difference_and_excludes_zero():
    rng = np.random.default_rng(1)
    f = ts.estimator("mean")
    _, _, _, ra = ts.estimate_with_ci(f, np.zeros(300), rng.normal(5.0, 2.0, 300), 1000, rng)
    _, _, _, rc = ts.estimate_with_ci(f, np.zeros(300), rng.normal(2.0, 2.0, 300), 1000, rng)
    lo, hi = ts.difference_ci(ra, rc)
    assert lo < 3.0 < hi
    assert lo > 0
    assert hi - lo < 1.0  # about 2 x 1.96 x 2 x sqrt(2/300) = 0.64


def test_wilson_and_newcombe_match_published_values():
    assert ts.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert ts.wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    # Newcombe 1998 (Stat Med 17:873), example: 56/70 vs 48/80 -> 0.0524 to 0.3339
    assert ts.newcombe_difference(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)


# --- responder logic and subgroups ----------------------------------------------------------------


def test_responder_rule_sperm_plus_50_percent_and_at_least_15():
    base = np.array([10.0, 10.0, 8.0, 0.0, 0.0, 20.0])
    later = np.array([16.0, 14.0, 15.0, 16.0, 0.0, 25.0])
    pc = ts.change_of("percent_change", base, later)
    np.testing.assert_allclose(pc[[0, 1, 2, 5]], [60.0, 40.0, 87.5, 25.0])
    assert pc[3] == np.inf and pc[4] == 0.0  # azoospermic at baseline: any sperm later is an infinite rise
    rise = ts.criterion_met(pc, min=50)
    level = ts.criterion_met(ts.change_of("level", base, later), min=15)
    assert ts.combine([rise, level], require_all=True).tolist() == [True, False, True, True, False, False]
    assert ts.combine([rise, level], require_all=False).tolist() == [True, False, True, True, False, True]


def test_criterion_bounds_are_inclusive_or_strict_as_named_and_nan_never_passes():
    v = np.array([5.0, 10.0, 15.0, np.nan])
    assert ts.criterion_met(v, min=10).tolist() == [False, True, True, False]
    assert ts.criterion_met(v, above=10).tolist() == [False, False, True, False]
    assert ts.criterion_met(v, below=10).tolist() == [True, False, False, False]
    assert ts.criterion_met(v, max=10, min=5).tolist() == [True, True, False, False]
    assert ts.change_of("change", np.array([2.0]), np.array([5.0])).tolist() == [3.0]


def test_subgroup_split_at_cuts():
    assert ts.subgroup_codes(np.array([5.0, 9.99, 10.0, 15.0]), [10]).tolist() == [0, 0, 1, 1]
    assert ts.subgroup_codes(np.array([20.0, 25.0, 29.0, 30.0, 41.0]), [25, 30]).tolist() == [0, 1, 1, 2, 2]
    t = validate_trial(_design(subgroups=[{"name": "BMI", "quantity": "bmi", "cuts": [25, 30]}]))
    assert t.subgroups[0].labels() == ["< 25 kg/m2", "25 to < 30 kg/m2", ">= 30 kg/m2"]


# --- schema and errors ----------------------------------------------------------------------------


def test_valid_design_converts_units_and_normalises_the_mixture():
    t = validate_trial(_design())
    assert t.phenotypes == {"subfertile": 0.5, "subfertile_low_te": 0.5}
    assert t.control.name == "control"
    e2_rule = t.responders[1].criteria[0]
    assert e2_rule.per_unit == pytest.approx(1 / 3.671, rel=1e-3)  # 1 pmol/L in pg/mL
    assert t.endpoints[1].per_unit == pytest.approx(28.84, rel=1e-3)  # 1 nmol/L of T in ng/dL


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"n_per_arm": 6, "colour": "red"}, ["unknown key 'colour'", "docs/trials.md"]),
        ({"population": {"phenotype": "subfertil"}}, ["population.phenotype", "'subfertil'", "Did you mean 'subfertile'"]),
        (
            {"endpoints": [{"quantity": "estradiol", "day": 28, "statistic": "mean", "unit": "mg/furlong"}]},
            ["endpoints[0]", "unit", "mg/furlong", "pg/mL"],
        ),
        (
            {"endpoints": [{"quantity": "estrogen", "day": 28, "statistic": "mean"}]},
            ["endpoints[0]", "unknown quantity 'estrogen'"],
        ),
        ({"endpoints": [{"quantity": "estradiol", "day": 90, "statistic": "mean"}]}, ["endpoints[0]", "day", "90", "28"]),
        ({"endpoints": [{"quantity": "lh", "day": 28, "statistic": "proportion_above"}]}, ["endpoints[0]", "threshold"]),
        ({"responders": [{"name": "x", "all": [{"quantity": "lh", "day": 28}]}]}, ["responders[0]", "bound"]),
        ({"seed": -3}, ["'seed'", "greater than or equal to 0", "-3"]),
    ],
)
def test_bad_trial_files_name_key_value_and_fix(change, fragments):
    with pytest.raises(SpecError) as e:
        validate_trial(_design(**change), source="my_trial.yaml")
    msg = str(e.value)
    assert msg.startswith("my_trial.yaml")
    for frag in fragments:
        assert frag in msg, msg


def test_a_negative_seed_override_is_refused():
    trial = validate_trial(_design(), source="my_trial.yaml")
    with pytest.raises(SpecError, match="--seed -1: must be a non-negative integer"):
        trial.with_overrides(seed=-1)


def test_exactly_one_control_arm_is_required():
    raw = _design()
    raw["arms"][0]["control"] = False
    with pytest.raises(SpecError, match="exactly one arm must be the control"):
        validate_trial(raw, source="t.yaml")
    raw["arms"][0]["control"] = raw["arms"][1]["control"] = True
    with pytest.raises(SpecError, match=r"got 2 \(control, AI\)"):
        validate_trial(raw, source="t.yaml")


def test_protocol_path_is_relative_to_the_trial_file_and_errors_name_the_arm(tmp_path, write_yaml):
    trial = write_yaml(TINY, "trial.yaml")
    with pytest.raises(SpecError, match=r"arm 'AI', key 'protocol'.*ai.yaml: protocol file not found"):
        from hpgsim.trial.schema import load_trial

        load_trial(trial)
    write_yaml(AI.replace("1 mg", "1 parsec"), "ai.yaml")
    with pytest.raises(SpecError, match=r"arm 'AI'.*regimens\[0\]\.dose"):
        load_trial(trial)


# --- end to end -----------------------------------------------------------------------------------


def test_tiny_trial_through_the_cli_writes_every_file(tmp_path, write_yaml):
    trial = write_yaml(TINY, "trial.yaml")
    write_yaml(AI, "ai.yaml")
    out = tmp_path / "out"
    res = runner.invoke(app, ["trial", str(trial), "--out", str(out), "--processes", "1"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    per_man = pd.read_parquet(out / "results.parquet")
    assert len(per_man) == 12 and set(per_man["arm"]) == {"control", "AI"}
    for col in (
        "man_id",
        "age",
        "bmi",
        "estradiol_day0",
        "estradiol_day28",
        "responder_t_e2_10",
        "responder_e2_low",
        "subgroup_baseline T/E2",
    ):
        assert col in per_man.columns
    assert per_man["man_id"].is_unique
    # T/E2 read from the same measured T and E2
    np.testing.assert_allclose(per_man["te_ratio_day28"], per_man["total_testosterone_day28"] / per_man["estradiol_day28"])
    ep = pd.read_csv(out / "endpoints.csv")
    e2 = ep[(ep["quantity"] == "estradiol") & (ep["statistic"] == "percent_change")].set_index("arm")
    assert e2.loc["AI", "estimate"] < e2.loc["control", "estimate"]  # the aromatase inhibitor lowers E2
    assert e2.loc["AI", "ci_low"] <= e2.loc["AI", "estimate"] <= e2.loc["AI", "ci_high"]
    assert np.isfinite(e2.loc["AI", "diff_vs_control"]) and np.isnan(e2.loc["control", "diff_vs_control"])
    drug = ep[ep["quantity"] == "anastrozole_concentration"].set_index("arm")["estimate"]
    assert drug["control"] == 0 and drug["AI"] > 0  # the control arm's model has no anastrozole: concentration 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "hpgsim trial" and "not a medical device" in summary["disclaimer"]
    html = (out / "report.html").read_text()
    assert "not a medical device" in html and "data:image/png;base64," in html and "provisional" in html
    sub = pd.read_csv(out / "subgroups.csv")
    assert set(sub["level"]) <= {"< 10 (ng/dL)/(pg/mL)", ">= 10 (ng/dL)/(pg/mL)"}
    assert "responder rates" in res.output


def _two_week_design(n_per_arm: int) -> dict:
    """The test design shortened to 2 weeks (control vs anastrozole), endpoints at day 14, no responders."""
    design = _design(n_per_arm=n_per_arm)
    design["arms"][1]["protocol"] = {
        "duration": "2 week",
        "regimens": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 day"}],
    }
    design["arms"][0]["protocol"] = {"duration": "2 week"}
    for e in design["endpoints"]:
        e["day"] = 14
    design["responders"] = []
    return design


def test_same_seed_same_results_other_seed_other_men(tmp_path, write_yaml):
    import hpgsim

    write_yaml(AI, "ai.yaml")
    design = _two_week_design(n_per_arm=4)
    a = hpgsim.trial(design, out=tmp_path / "a", processes=1)
    b = hpgsim.trial(design, out=tmp_path / "b", processes=1)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a" / "results.parquet"), pd.read_parquet(tmp_path / "b" / "results.parquet")
    )
    pd.testing.assert_frame_equal(a.endpoints, b.endpoints)
    c = hpgsim.trial(design, processes=1, seed=4)
    assert not np.allclose(c.per_man["age"], a.per_man["age"])


def test_bad_input_exits_2_and_writes_nothing(tmp_path, write_yaml):
    trial = write_yaml(TINY.replace("n_per_arm: 6", "n_per_arm: 6\nn_per_arms: 7"), "trial.yaml")
    write_yaml(AI, "ai.yaml")
    out = tmp_path / "out"
    res = runner.invoke(app, ["trial", str(trial), "--out", str(out)])
    assert res.exit_code == 2
    assert "unknown key 'n_per_arms'" in res.output and "Traceback" not in res.output
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["trial", str(write_yaml(TINY, "trial.yaml")), "--out", str(taken)])
    assert res.exit_code == 2 and "non-empty folder" in res.output
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]


def test_published_matching_by_drug_and_class():
    from hpgsim.protocol.schema import validate_protocol
    from hpgsim.trial.published import drug_match

    def p(drug: str | None) -> object:
        regs = [{"drug": drug, "dose": "1 mg", "every": "1 day"}] if drug else []
        return validate_protocol({"duration": "1 week", "regimens": regs})

    assert drug_match(p("anastrozole"), p("anastrozole")) == "same drug"
    assert drug_match(p("anastrozole"), p("letrozole")) == "same class"
    assert drug_match(p("anastrozole"), p("tamoxifen")) is None
    assert drug_match(p(None), p(None)) is None


@pytest.mark.slow
def test_trial_on_a_two_worker_dask_cluster_gives_the_local_results(tmp_path, write_yaml):
    import hpgsim

    write_yaml(AI, "ai.yaml")
    design = _two_week_design(n_per_arm=3)
    local = hpgsim.trial(design, processes=1)
    dask = hpgsim.trial(design, processes=1, scheduler="processes:2")
    pd.testing.assert_frame_equal(local.per_man, dask.per_man)
    pd.testing.assert_frame_equal(local.endpoints, dask.endpoints)
