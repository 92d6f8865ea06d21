"""The model as data: completeness, provenance of every parameter, the drug library and the public API."""

from __future__ import annotations

import pytest

import hpgsim
from hpgsim.engine.codegen import generate_source
from hpgsim.engine.sbml import build_sbml
from hpgsim.errors import SpecError
from hpgsim.model.spec import _parameter, load_model

DRUGS = {
    "anastrozole",
    "letrozole",
    "clomiphene_citrate",
    "enclomiphene",
    "tamoxifen",
    "gonadorelin",
    "hcg",
    "recombinant_fsh",
    "testosterone_cypionate",
    "testosterone_enanthate",
    "testosterone_gel",
    "estradiol_patch",  # feedback experiments (E2 add-back), not a fertility drug
}

REQUIRED_STATES = {
    "gnrh_drive",
    "gnrh_receptor_active",
    "lh_serum",
    "fsh_endogenous",
    "leydig_activity",
    "itt",
    "testosterone",
    "estradiol_serum",
    "shbg_serum",
    "inhibin_b_serum",
    "epididymis_2",
}


def test_every_parameter_has_value_unit_and_source():
    spec = load_model()
    for p in spec.parameters.values():
        assert p.unit, p.name
        assert len(p.source) > 5, p.name
        assert p.value == p.value, p.name  # not NaN
        if p.cv is not None:
            assert 0 < p.cv < 2, p.name
        if p.max is not None:  # shares and fractions: the calibrated value too stays within its max
            assert 0 <= p.value <= p.max, p.name


def test_shares_carry_their_maximum_and_a_value_above_it_is_refused():
    spec = load_model(frozenset({"anastrozole"}))
    for name in ("spermiation_failure_max", "fsh_sperm_weight", "inhb_germ_weight", "e2_hyp_floor", "anastrozole_imax"):
        assert spec.parameters[name].max == 1.0, name
    assert spec.parameters["spermiogenesis_share"].max < 1.0  # the meiotic transit divides by 1 - share
    raw = {"value": 1.2, "unit": "1", "source": "test", "max": 1}
    with pytest.raises(SpecError, match=r"'share_x' has value 1\.2 above its max 1"):
        _parameter("share_x", raw, "physiology", "physiology.yaml")


def test_the_drug_library_has_the_eleven_drugs_of_the_design():
    spec = load_model()
    assert set(spec.drugs) == DRUGS
    for d in spec.drugs.values():
        assert d.dose_unit in {"mg", "ug", "IU"}
        assert d.studied_min <= d.studied_max


def test_required_states_exist_and_each_state_has_a_rate():
    spec = load_model()
    assert set(spec.state_names) >= REQUIRED_STATES
    assert set(spec.rates) == set(spec.state_names)
    chain = [s for s in spec.state_names if s.startswith("germ_")]
    assert len(chain) >= 4


def test_pruned_model_keeps_physiology_and_dependencies():
    from hpgsim.model.spec import drug_dependencies

    deps = drug_dependencies(frozenset({"clomiphene_citrate"}))
    assert deps == {"clomiphene_citrate", "enclomiphene"}
    small = load_model(deps)
    full = load_model()
    phys = [s.name for s in full.states if s.owner == "physiology"]
    assert [s.name for s in small.states if s.owner == "physiology"] == phys
    assert small.rates["testosterone"] == full.rates["testosterone"]


def test_sbml_and_python_are_generated_from_the_same_expressions():
    import libsbml

    spec = load_model(frozenset({"anastrozole"}))
    doc = libsbml.readSBMLFromString(build_sbml(spec))
    assert doc.getNumErrors(libsbml.LIBSBML_SEV_ERROR) == 0
    model = doc.getModel()
    assert model.getNumRules() == len(spec.states) + len(spec.intermediates)
    src = generate_source(spec)
    for e in spec.intermediates:
        assert f"{e.name} = {e.expr}" in src


def test_public_api_is_listed_once():
    assert sorted(hpgsim.__all__) == sorted(set(hpgsim.__all__))
    for name in hpgsim.__all__:
        assert hasattr(hpgsim, name), name
    assert {"simulate", "simulate_population", "load_protocol", "typical_patient"} <= set(hpgsim.__all__)


def test_digest_is_stable_and_changes_with_parameters():
    spec = load_model()
    assert spec.digest() == load_model().digest()
    assert load_model(frozenset({"anastrozole"})).digest() != spec.digest()
