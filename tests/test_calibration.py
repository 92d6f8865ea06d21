"""Calibration: the objective's scaling, the free-parameter config, and the calibrated.yaml overlay."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpgsim.model.spec import UNCALIBRATED_ENV, load_model
from hpgsim.population.phenotypes import _raw as phenotype_raw
from hpgsim.population.phenotypes import typical_patient
from hpgsim.validation import calibrate as cal
from hpgsim.validation.calibrate import load_anchors
from hpgsim.validation.studies import validate_study

STUDY = {
    "id": "CalTiny2026",
    "citation": "synthetic",
    "evidence": "abstract",
    "population": {"description": "d", "phenotype": "healthy", "age_years": {"mean": 30, "sd": 3}},
    "arms": [
        {
            "name": "anastrozole",
            "n": 25,
            "protocol": {"duration": "4 week", "regimens": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 day"}]},
            "observations": [
                {"quantity": "estradiol", "unit": "pg/mL", "day": 0, "stat": "mean", "value": 25, "sd": 5},
                {"quantity": "estradiol", "unit": "pg/mL", "day": 28, "stat": "mean", "value": 15, "sd": 5},
                {"quantity": "total_testosterone", "unit": "ng/dL", "day": 28, "stat": "percent_change", "value": 50},
                {"quantity": "lh", "unit": "IU/L", "day": 28, "stat": "proportion_above", "threshold": 5, "value": 0.5},
            ],
        }
    ],
}


@pytest.fixture
def study():
    return validate_study(STUDY, "cal_tiny.yaml")


def test_residuals_are_scaled_by_the_score_tolerance(study):
    free = [cal.FreeParameter("e2_hyp_k", 56.46, 0.5, 15, 250, "")]
    prior = {f.name: f.prior for f in free}
    rows = cal.arm_residuals(study, 0, {"e2_hyp_k": 56.46}, prior)
    # proportions need a cohort: they stay out of the typical-man objective
    assert [r["stat"] for r in rows] == ["mean", "mean", "percent_change"]
    day0, day28, pct = rows
    # a day-0 level: tolerance max(1.96 SE, 20%) = max(1.96, 5) = 5 pg/mL
    assert day0["residual"] == pytest.approx((day0["simulated"] - 25) / 5.0)
    # a later mean with a day-0 row is scored as a change from baseline
    se = math.hypot(5 / 5, 5 / 5)
    tol = max(1.96 * se, 0.25 * 10, 0.05 * 25)
    assert day28["residual"] == pytest.approx(((day28["simulated"] - day0["simulated"]) - (15 - 25)) / tol)
    assert pct["residual"] == pytest.approx((pct["simulated"] - 50) / max(0.25 * 50, 5.0))
    # and the change has the right sign: anastrozole lowers E2 and raises T
    assert day28["simulated"] < day0["simulated"] and pct["simulated"] > 0


def test_a_parameter_change_moves_the_residuals_the_right_way(study):
    prior = {"e2_hyp_k": 56.46}
    weak = cal.arm_residuals(study, 0, {"e2_hyp_k": 56.46 * 3}, prior)  # weaker E2 feedback
    strong = cal.arm_residuals(study, 0, {"e2_hyp_k": 56.46 / 2}, prior)  # stronger E2 feedback
    # with stronger estradiol feedback, removing estradiol releases more LH, so T rises more
    assert strong[2]["simulated"] > weak[2]["simulated"]


def test_phenotype_multiplier_applies_to_its_phenotype_only(study):
    prior = {"secondary_hypogonadism.gnrh_capacity": 1.0}
    man = cal._arm_man(study, 0, {"secondary_hypogonadism.gnrh_capacity": 2.0}, prior)
    assert man.parameters["gnrh_capacity"] == pytest.approx(typical_patient("healthy").parameters["gnrh_capacity"])


def test_config_lists_few_bounded_parameters_with_priors():
    free = cal.load_calibration_config()
    # few free parameters: at most 12 shared physiology parameters; drug parameters (each identified by
    # its own drug's studies) and phenotype multipliers come on top
    params = load_model().parameters
    physiology = [f for f in free if "." not in f.name and params[f.name].owner == "physiology"]
    assert 3 <= len(physiology) <= 12
    assert len(free) <= 20
    for f in free:
        assert 0 < f.lower < f.prior < f.upper and f.sd_log > 0 and f.why


def test_calibrated_overlay_sets_values_with_provenance(tmp_path, monkeypatch):
    result = {
        "against": ["A2000", "B2001"],
        "values": {
            "e2_hyp_k": {"value": 40.0, "before": 56.46},
            "secondary_hypogonadism.gnrh_capacity": {"value": 0.5, "before": 1.0},
        },
        "evaluations": 3,
        "status": "test",
    }
    path = cal.write_calibrated(result, tmp_path / "calibrated.yaml")
    text = path.read_text()
    assert "A2000" in text and "phenotype_multipliers" in text
    # load_model reads the packaged file; point the reader at ours
    from hpgsim.model import spec as spec_mod

    real = spec_mod._read_yaml

    def fake(package: str, name: str):
        if name == "calibrated.yaml":
            import yaml

            return yaml.safe_load(path.read_text())
        return real(package, name)

    monkeypatch.setattr(spec_mod, "_read_yaml", fake)
    monkeypatch.setattr(spec_mod, "calibration_overlay", lambda: fake("hpgsim.data.model", "calibrated.yaml"))
    import hpgsim.population.phenotypes as ph_mod

    monkeypatch.setattr(ph_mod, "calibration_overlay", spec_mod.calibration_overlay)
    load_model.cache_clear()
    phenotype_raw.cache_clear()
    try:
        p = load_model(frozenset()).parameters["e2_hyp_k"]
        assert p.value == 40.0 and p.source.startswith("calibrated: against A2000, B2001")
        before = typical_patient("healthy").parameters["gnrh_capacity"]
        after = typical_patient("secondary_hypogonadism").parameters["gnrh_capacity"]
        assert after == pytest.approx(0.5 * before)
        monkeypatch.setenv(UNCALIBRATED_ENV, "1")
        monkeypatch.setattr(spec_mod, "calibration_overlay", lambda: {})
        load_model.cache_clear()
        assert (
            load_model(frozenset()).parameters["e2_hyp_k"].value
            == load_model(frozenset(), calibrated=False).parameters["e2_hyp_k"].value
        )
    finally:
        load_model.cache_clear()
        phenotype_raw.cache_clear()


def test_uncalibrated_switch_is_honoured(monkeypatch):
    monkeypatch.setenv(UNCALIBRATED_ENV, "1")
    from hpgsim.model.spec import calibration_overlay

    assert calibration_overlay() == {}
    assert np.isfinite(load_model(frozenset(), calibrated=False).parameters["e2_hyp_k"].value)


def test_calibrate_end_to_end_on_a_tiny_study(study, tmp_path):
    from hpgsim.cli.calibrate import summary_markdown

    free = [cal.FreeParameter("e2_hyp_k", cal.load_model(None, calibrated=False).parameters["e2_hyp_k"].value, 0.5, 15, 250, "t")]
    result = cal.calibrate([study], free, processes=1, max_iterations=2)
    import os

    assert UNCALIBRATED_ENV not in os.environ  # the fit leaves the process on the calibrated model
    assert result["against"] == ["CalTiny2026"]
    assert set(result["values"]) == {"e2_hyp_k"} | {a.parameter for a in load_anchors()}
    assert len(result["before"]) == len(result["after"]) == 3
    # the fit cannot be worse than where it started (soft-L1 cost on the data residuals and the prior)
    cost = lambda rows: sum(min(r["residual"] ** 2, 2 * abs(r["residual"])) for r in rows)  # noqa: E731
    assert cost(result["after"]) <= cost(result["before"]) + 1.0
    text = summary_markdown(result)
    assert "baseline anchor" in text and "CalTiny2026" in text
    path = cal.write_calibrated(result, tmp_path / "c.yaml")
    assert "against:\n- CalTiny2026" in path.read_text()


def test_cohort_offsets_shift_the_typical_man_and_cancel_in_a_change(study):
    prior = {"e2_hyp_k": 56.46}
    plain = cal.arm_residuals(study, 0, prior, prior)
    # an offset on the day-28 level moves it; the same offset on day 0 and day 28 leaves the change alone
    one = cal.arm_residuals(study, 0, prior, prior, {1: -2.0})
    both = cal.arm_residuals(study, 0, prior, prior, {0: -2.0, 1: -2.0, 2: 7.0})
    assert one[1]["simulated"] == pytest.approx(plain[1]["simulated"] - 2.0) and one[1]["offset"] == -2.0
    assert one[1]["residual"] != pytest.approx(plain[1]["residual"])
    assert both[0]["residual"] == pytest.approx(plain[0]["residual"] - 2.0 / 5.0)
    assert both[1]["residual"] == pytest.approx(plain[1]["residual"])
    assert both[2]["simulated"] == pytest.approx(plain[2]["simulated"] + 7.0)


def test_calibrated_from_reads_another_file_and_restores(tmp_path):
    import os

    from hpgsim.model.spec import CALIBRATED_FILE_ENV, calibration_overlay

    path = tmp_path / "c.yaml"
    path.write_text("against: [X]\nvalues:\n  e2_pit_k: {value: 123.0}\n", encoding="utf-8")
    package_value = load_model(None).parameters["e2_pit_k"].value
    with cal.calibrated_from(path):
        assert calibration_overlay()["against"] == ["X"]
        assert load_model(None).parameters["e2_pit_k"].value == 123.0
    assert CALIBRATED_FILE_ENV not in os.environ
    assert load_model(None).parameters["e2_pit_k"].value == package_value


def test_cohort_pass_offsets_are_cohort_minus_typical_man(study):
    """One cohort pass on the tiny study: the offsets are validation's cohort statistics minus the typical
    man's, at the first fit, and the refit uses them."""
    from hpgsim.validation.run import run_study

    free = [cal.FreeParameter("e2_hyp_k", cal.load_model(None, calibrated=False).parameters["e2_hyp_k"].value, 0.5, 15, 250, "t")]
    first = cal.calibrate([study], free, processes=1, max_iterations=1)
    offsets = cal.cohort_offsets([study], first, n=12, seed=3, processes=1)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp, cal.calibrated_from(cal.write_calibrated(first, Path(tmp) / "c.yaml")):
        cohort = run_study(study, n=12, seed=3, processes=1)
    typical = {r["index"]: r["simulated"] for r in first["after"]}
    assert set(offsets) == {("CalTiny2026", 0, i) for i in (0, 1, 2)}  # not the proportion: no typical-man value
    for i in (0, 1, 2):
        assert offsets[("CalTiny2026", 0, i)] == pytest.approx(cohort[i]["simulated"] - typical[i])
    result = cal.calibrate_with_cohorts([study], free, processes=1, max_iterations=1, passes=1, n=12, seed=3)
    assert result["cohort"]["passes"] == 1 and len(result["cohort"]["offsets"]) == 3
    assert [r["offset"] for r in result["after"]] == pytest.approx([offsets[("CalTiny2026", 0, i)] for i in (0, 1, 2)])
    text = " ".join(cal.write_calibrated(result, Path(tempfile.mkdtemp()) / "c.yaml").read_text().split())
    assert "cohort offsets (1 pass(es), 12 men per arm, seed 3)" in text
