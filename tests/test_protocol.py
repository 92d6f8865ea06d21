"""Protocol files: valid expansion and every bad-input path (ProtocolError naming key, value, fix)."""

from __future__ import annotations

import pytest

from hpgsim.errors import ProtocolError
from hpgsim.protocol.schema import load_protocol, protocol_flags, validate_protocol


def test_daily_regimen_expands_to_doses_before_stop():
    p = validate_protocol(
        {
            "duration": "2 week",
            "regimens": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 day", "start": "2 day", "stop": "5 day"}],
        }
    )
    assert p.duration_h == 336
    (r,) = p.regimens
    assert r.times_h == (48.0, 72.0, 96.0)  # no dose at or after stop
    assert r.dose == 1.0 and r.dose_unit == "mg" and r.route == "oral"


def test_explicit_times_and_unit_conversion():
    p = validate_protocol(
        {"duration": "1 day", "regimens": [{"drug": "gonadorelin", "dose": "0.1 mg", "at": ["0 h", "90 min"], "route": "iv"}]}
    )
    (r,) = p.regimens
    assert r.dose == pytest.approx(100.0)  # ug
    assert r.times_h == (0.0, 1.5)


@pytest.mark.parametrize(
    ("drug", "route", "dose", "expected"),
    [
        ("hCG", "Intramuscular", "1500 units", ("hcg", "im", 1500.0)),
        ("Clomiphene", "PO", "25 mg", ("clomiphene_citrate", "oral", 25.0)),
        ("testosterone enanthate", "i.m.", "200 mg", ("testosterone_enanthate", "im", 200.0)),
        ("rFSH", "subcutaneous", "150 IU", ("recombinant_fsh", "sc", 150.0)),
        ("GnRH", "IV", "10 ug", ("gonadorelin", "iv", 10.0)),
        ("testosterone-gel", "topical", "50 mg", ("testosterone_gel", "transdermal", 50.0)),
    ],
)
def test_drug_names_and_routes_as_papers_write_them(drug, route, dose, expected):
    """Protocols (and so study files) may name drugs and routes as papers do; they map to the library's names."""
    p = validate_protocol({"duration": "2 wk", "regimens": [{"drug": drug, "dose": dose, "every": "1 week", "route": route}]})
    (r,) = p.regimens
    assert (r.drug, r.route, r.dose) == expected
    assert p.duration_h == 336


def test_regimens_default_to_natural_course():
    assert validate_protocol({"duration": "26 week"}).regimens == ()


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        (
            {"duration": "4 week", "regimens": [{"drug": "anastrazole", "dose": "1 mg", "every": "1 day"}]},
            ["anastrazole", "Did you mean 'anastrozole'"],
        ),
        (
            {"duration": "4 week", "regimens": [{"drug": "anastrozole", "dose": 1, "every": "1 day"}]},
            ["regimens[0].dose", "no unit"],
        ),
        (
            {"duration": "4 week", "regimens": [{"drug": "anastrozole", "dose": "1 bananas", "every": "1 day"}]},
            ["regimens[0].dose", "cannot read"],
        ),
        (
            {"duration": "4 week", "regimens": [{"drug": "anastrozole", "dose": "1 IU", "every": "1 day"}]},
            ["cannot be converted to mg"],
        ),
        (
            {"duration": "4 week", "regimens": [{"drug": "anastrozole", "dose": "-1 mg", "every": "1 day"}]},
            ["regimens[0].dose", "greater than zero"],
        ),
        ({"duration": "4 week", "regimens": [{"drug": "anastrozole", "dose": "0 mg", "every": "1 day"}]}, ["greater than zero"]),
        (
            {
                "duration": "4 week",
                "regimens": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 day", "start": "2 week", "stop": "1 week"}],
            },
            ["regimens[0].stop", "not after start"],
        ),
        (
            {"duration": "4 week", "regimens": [{"drug": "gonadorelin", "dose": "1 ug", "every": "30 s"}]},
            ["regimens[0].every", "shorter than one minute"],
        ),
        ({"duration": "21 year"}, ["duration", "20-year limit"]),
        ({"duration": "4 week", "regimens": [{"drug": "anastrozole", "dose": "1 mg"}]}, ["exactly one of 'every'"]),
        (
            {"duration": "4 week", "regimens": [{"drug": "letrozole", "dose": "2.5 mg", "every": "1 day", "route": "IM"}]},
            ["regimens[0].route", "no route 'IM'", "['oral']"],
        ),
        (
            {"duration": "4 week", "regimens": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 mg"}]},
            ["regimens[0].every", "not a duration"],
        ),
        (
            {"duration": "4 week", "regimens": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 day", "route": "iv"}]},
            ["route", "oral"],
        ),
        ({"duration": "4 week", "dosage": 3}, ["unknown key 'dosage'"]),
        ({"regimens": []}, ["missing required key 'duration'"]),
        ({"duration": "4"}, ["duration", "no unit"]),
        ("just text", ["must be a mapping"]),
    ],
)
def test_bad_protocols_are_rejected_with_a_clear_message(raw, fragments):
    with pytest.raises(ProtocolError) as exc:
        validate_protocol(raw, source="my.yaml")
    msg = str(exc.value)
    assert "my.yaml" in msg
    for f in fragments:
        assert f in msg


def test_missing_file_and_malformed_yaml(tmp_path, write_yaml):
    with pytest.raises(ProtocolError, match="not found"):
        load_protocol(tmp_path / "nope.yaml")
    bad = write_yaml("duration: 4 week\nregimens:\n  - drug: anastrozole\n   dose: 1 mg\n")
    with pytest.raises(ProtocolError, match="not valid YAML at line"):
        load_protocol(bad)


def test_doses_outside_the_studied_range_are_flagged_not_rejected():
    p = validate_protocol({"duration": "4 week", "regimens": [{"drug": "anastrozole", "dose": "20 mg", "every": "1 day"}]})
    flags = [f for f in protocol_flags(p) if "studied range" in f]
    assert len(flags) == 1 and "outside the range the model was validated on" in flags[0]
    ok = validate_protocol({"duration": "4 week", "regimens": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 day"}]})
    assert [f for f in protocol_flags(ok) if "studied range" in f] == []


@pytest.mark.parametrize(
    ("drug", "dose", "says"),
    [
        ("anastrozole", "1 mg", "the share of its inhibition that reaches hypothalamic aromatase"),
        ("clomiphene_citrate", "25 mg", "FSH rises less"),
    ],
)
def test_known_biases_of_a_drug_model_are_flagged(drug, dose, says):
    # The measured shortfalls (docs/validation.md) travel with every result that uses the drug.
    p = validate_protocol({"duration": "4 week", "regimens": [{"drug": drug, "dose": dose, "every": "1 day"}]})
    flags = protocol_flags(p)
    assert len(flags) == 1 and flags[0].startswith(f"{drug}: {says}")


def test_a_drug_caveat_is_flagged_on_every_protocol_that_uses_it():
    p = validate_protocol(
        {
            "duration": "4 week",
            "regimens": [
                {"drug": "estradiol_patch", "dose": "50 ug", "every": "1 day"},
                {"drug": "estradiol_patch", "dose": "50 ug", "every": "1 day", "start": "1 week"},
            ],
        }
    )
    flags = protocol_flags(p)
    assert len(flags) == 1 and flags[0].startswith("estradiol_patch: for feedback experiments")
    assert "not a treatment of male infertility" in flags[0]
