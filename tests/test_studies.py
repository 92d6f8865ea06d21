"""Study files: the packaged copy equals the shared data, every file validates, bad files are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpgsim.errors import SpecError
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
