"""Study files: the packaged copy equals the shared data, every file validates, bad files are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hpgsim.errors import SpecError
from hpgsim.population.covariates import CovariateDistribution as Distribution
from hpgsim.units import to_canonical
from hpgsim.validation.studies import load_studies, packaged_study_dir, validate_study

SHARED_STUDIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "studies"


def test_packaged_copy_matches_the_shared_study_files():
    if not SHARED_STUDIES.is_dir():
        pytest.skip("../shared is not beside this checkout")
    shared = {p.name: p.read_bytes() for p in SHARED_STUDIES.iterdir() if p.is_file()}
    packaged = {p.name: p.read_bytes() for p in packaged_study_dir().iterdir() if p.suffix in (".yaml", ".md")}
    assert packaged == shared


def test_every_packaged_study_validates():
    studies = load_studies([packaged_study_dir()])
    assert len(studies) == 29
    assert sum(len(s.data.arms) for s in studies) == 43
    assert sum(len(a.observations) for s in studies for a in s.data.arms) == 128


@pytest.mark.parametrize(
    ("quantity", "value", "unit", "expected"),
    [
        ("total_testosterone", 1.0, "nmol/L", 28.84),
        ("total_testosterone", 5.0, "ng/mL", 500.0),
        ("estradiol", 3.671, "pmol/L", 1.0),
        ("free_testosterone", 3.467, "pmol/L", 1.0),
        ("lh", 5.0, "mIU/mL", 5.0),
        ("fsh", 5.0, "U/L", 5.0),
        ("inhibin_b", 100.0, "ng/L", 100.0),
        ("sperm_concentration", 15.0, "1e6/mL", 15.0),
        ("intratesticular_testosterone", 609.0, "ng/mL", 609.0 / 288.4 * 1000),
        # semen counts in millions, as papers write them
        ("sperm_concentration", 15.0, "1e6/ml", 15.0),
        ("sperm_concentration", 15.0, "10^6/mL", 15.0),
        ("sperm_concentration", 15.0, "x10^6/mL", 15.0),
        ("sperm_concentration", 15.0, "×10⁶/mL", 15.0),
        ("sperm_concentration", 15.0, "million/mL", 15.0),
        ("sperm_concentration", 15.0, "M/mL", 15.0),
        ("sperm_concentration", 15e6, "1/mL", 15.0),
        ("total_sperm_count", 40.0, "million", 40.0),
        ("total_motile_count", 40.0, "10^6", 40.0),
        ("total_testosterone", 10.0, "nM", 288.4),  # "M" stays molar outside semen counts
    ],
)
def test_units_convert_to_canonical(quantity, value, unit, expected):
    assert to_canonical(quantity, value, unit) == pytest.approx(expected, rel=2e-3)


def _study(**over):
    raw = {
        "id": "X2000",
        "citation": "X",
        "evidence": "abstract",
        "population": {"description": "d", "phenotype": "healthy"},
        "arms": [
            {
                "name": "A",
                "n": 10,
                "protocol": {"duration": "4 week", "regimens": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 day"}]},
                "observations": [{"quantity": "estradiol", "unit": "pg/mL", "day": 28, "stat": "mean", "value": 17}],
            }
        ],
    }
    raw.update(over)
    return raw


def test_a_valid_minimal_study():
    s = validate_study(_study(), "x.yaml")
    assert s.id == "X2000" and s.protocols[0].duration_h == 28 * 24


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda r: r["arms"][0]["observations"][0].update(stat="average"), ["arm 'A'", "observation 1", "stat"]),
        (lambda r: r["arms"][0]["observations"][0].update(unit="furlongs"), ["arm 'A'", "observation 1", "furlongs"]),
        (lambda r: r["arms"][0]["observations"][0].update(unit="IU/L"), ["cannot be converted to pg/mL"]),
        (lambda r: r["arms"][0]["observations"][0].update(stat="median_time_to"), ["needs exactly one of 'below' or 'above'"]),
        (lambda r: r["arms"][0]["protocol"].update(duration="4"), ["arm 'A', protocol", "no unit"]),
        (lambda r: r["population"].update(phenotype="athlete"), ["unknown phenotype"]),
        (lambda r: r.pop("arms"), ["key 'arms'"]),
        (lambda r: r["population"].update(age_years={"sd": 5}), ["population.age_years", "give 'mean' or 'median'"]),
        (lambda r: r["population"].update(age_years={"median": 36, "iqr": [44, 30]}), ["'iqr' must be [low, high]"]),
        (lambda r: r["population"].update(bmi_kg_m2={"mean": 22, "min": 25}), ["outside the limits [25, inf]"]),
        (lambda r: r["population"].update(age_years={"mean": 60, "sd": 5, "iqr": [55, 65]}), ["at most one spread"]),
    ],
)
def test_malformed_study_files_name_file_arm_and_observation(change, fragments):
    raw = _study()
    change(raw)
    with pytest.raises(SpecError) as exc:
        validate_study(raw, "bad.yaml")
    msg = str(exc.value)
    assert "bad.yaml" in msg
    for f in fragments:
        assert f in msg


def test_age_and_bmi_may_be_published_as_median_iqr_and_range():
    """A study may give its men's age as a median with an IQR and range, and BMI as a mean with a minimum
    (an inclusion criterion): the drawn men are centred there and stay inside the limits."""
    from hpgsim.validation.run import draw_cohort

    raw = _study(
        population={
            "description": "d",
            "phenotype": "healthy",
            "age_years": {"median": 36, "iqr": [30, 44], "range": [22, 70]},
            "bmi_kg_m2": {"mean": 27, "sd": 4, "min": 25},
        }
    )
    study = validate_study(raw, "x.yaml")
    age = study.data.population.age_years
    assert age is not None and age.centre == 36 and age.typical == 36
    assert age.spread == pytest.approx(14 / 1.349) and age.bounds == (22, 70)
    men = draw_cohort(study, 0, 60, seed=1)
    ages = np.array([m.parameters["age"] for m in men])
    bmis = np.array([m.parameters["bmi"] for m in men])
    assert ages.min() >= 22 and ages.max() <= 70 and 31 < np.median(ages) < 41
    assert bmis.min() >= 25 and bmis.mean() > 27  # truncated below at the minimum


def test_a_mean_and_sd_alone_draw_as_a_plain_normal():
    """Files that give only mean and sd (all the packaged ones) draw one normal value per man, as before."""
    d = Distribution(mean=68, sd=5)
    a = [d.draw(np.random.default_rng(3), floor=18.0) for _ in range(1)]
    assert a[0] == pytest.approx(np.random.default_rng(3).normal(68, 5))


def test_limits_alone_draw_uniformly_between_them():
    """'Men aged 62-74' as {min: 62, max: 74} (or {range: [62, 74]}): uniform between the limits."""
    for d in (Distribution(min=62, max=74), Distribution(range=(62, 74))):
        rng = np.random.default_rng(0)
        x = np.array([d.draw(rng, floor=18.0) for _ in range(400)])
        assert x.min() >= 62 and x.max() <= 74 and abs(x.mean() - 68) < 0.6 and d.typical == 68


def test_published_shorthands_a_bare_age_a_text_range_and_sem():
    assert Distribution.model_validate(45) == Distribution(mean=45)
    assert Distribution.model_validate("40-60") == Distribution(range=(40, 60))
    assert Distribution.model_validate("40 to 60") == Distribution(range=(40, 60))
    with pytest.raises(ValueError):
        Distribution.model_validate("about forty")
    from hpgsim.validation.studies import Observation

    obs = Observation.model_validate({"quantity": "lh", "unit": "IU/L", "day": 0, "stat": "mean", "value": 4, "sem": 0.5})
    assert obs.se == 0.5
    with pytest.raises(ValueError, match="at most one spread"):
        Observation.model_validate({"quantity": "lh", "day": 0, "stat": "mean", "value": 4, "sem": 0.5, "sd": 2})
    # a proportion's threshold written the way median_time_to writes it
    sc = {"quantity": "sperm_concentration", "unit": "1e6/mL", "day": 180}
    below = Observation.model_validate({**sc, "stat": "proportion_below", "below": 0.01, "value": 0.6})
    assert below.threshold == 0.01 and below.below is None
    above = Observation.model_validate({**sc, "stat": "cumulative_above", "above": 20, "from_day": 0, "value": 0.5})
    assert above.threshold == 20
    with pytest.raises(ValueError, match="needs 'threshold'"):  # the wrong side is not guessed
        Observation.model_validate({**sc, "stat": "proportion_below", "above": 20, "value": 0.5})


def test_held_out_studies_validate_and_are_not_in_the_calibration_set():
    """studies/holdout (the out-of-set check, README there) loads, and none of it is a packaged study."""
    folder = Path(__file__).resolve().parents[1] / "studies" / "holdout"
    held = load_studies([folder])
    assert len(held) >= 5
    packaged = {s.id for s in load_studies([packaged_study_dir()])}
    assert not packaged & {s.id for s in held}
