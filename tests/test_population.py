"""Phenotypes and virtual patients: typical men, seeded populations, patient files."""

from __future__ import annotations

import numpy as np
import pytest

from hpgsim.errors import SpecError
from hpgsim.model.spec import load_model
from hpgsim.population.phenotypes import (
    Patient,
    get_phenotype,
    load_patient,
    phenotype_names,
    sample_patients,
    typical_patient,
)


def test_phenotypes_of_this_issue_exist():
    assert {"healthy", "hypogonadotropic_hypogonadism"} <= set(phenotype_names())


def test_unknown_phenotype_suggests_the_closest():
    with pytest.raises(SpecError, match="Did you mean 'healthy'"):
        get_phenotype("helthy")


def test_typical_man_uses_the_median_covariates():
    man = typical_patient("healthy")
    ph = get_phenotype("healthy")
    assert man.parameters["age"] == ph.age["median"] and man.parameters["bmi"] == ph.bmi["median"]


def test_population_is_seeded_and_lognormal_around_the_typical_value():
    a = sample_patients("healthy", 400, seed=7)
    b = sample_patients("healthy", 400, seed=7)
    assert [m.parameters for m in a] == [m.parameters for m in b]
    typical = typical_patient("healthy").parameters["t_production_max"]
    vals = np.array([m.parameters["t_production_max"] for m in a])
    assert np.median(vals) == pytest.approx(typical, rel=0.1)
    cv = np.std(np.log(vals))
    assert cv == pytest.approx(np.sqrt(np.log1p(0.2**2)), rel=0.15)
    ages = np.array([m.parameters["age"] for m in a])
    assert ages.min() >= 20 and ages.max() <= 50


def test_a_new_variable_parameter_leaves_the_other_draws_unchanged(monkeypatch):
    """Common random numbers: each parameter has its own stream, so model versions compare on the same men."""
    import dataclasses

    from hpgsim.population import phenotypes

    before = sample_patients("healthy", 50, seed=3)
    ph = get_phenotype("healthy")
    assert "hcg_ka" not in ph.cv  # a parameter without between-man variability today
    widened = dataclasses.replace(ph, cv={**ph.cv, "hcg_ka": 0.5})
    monkeypatch.setattr(phenotypes, "get_phenotype", lambda name: widened)
    after = sample_patients("healthy", 50, seed=3)
    for a, b in zip(before, after, strict=True):
        assert {k: v for k, v in a.parameters.items() if k != "hcg_ka"} == {
            k: v for k, v in b.parameters.items() if k != "hcg_ka"
        }
    assert len({m.parameters["hcg_ka"] for m in after}) == 50
    assert sample_patients("healthy", 50, seed=4)[0].parameters != before[0].parameters


@pytest.mark.parametrize("seed", [-1, 1.5, "7"])
def test_a_bad_seed_is_named_in_the_error(seed):
    with pytest.raises(SpecError, match="--seed must be a non-negative integer"):
        sample_patients("healthy", 5, seed=seed)


def test_patient_file_overrides_parameters(write_yaml):
    f = write_yaml("name: John\nphenotype: healthy\nparameters:\n  sperm_production_capacity: 50\n")
    man = load_patient(f)
    assert man.name == "John" and man.parameters["sperm_production_capacity"] == 50
    assert man.parameters["age"] == typical_patient("healthy").parameters["age"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("parameters:\n  sperm_production_capasity: 50\n", "Did you mean 'sperm_production_capacity'"),
        ("parameters:\n  t_clearance: -3\n", "non-negative number in L/h"),
        ("parameters:\n  t_clearance: fast\n", "non-negative number"),
        ("parameters:\n  spermiation_failure_max: 1.5\n", "above its maximum 1 .*use a value between 0 and 1"),
        ("parameters:\n  spermiogenesis_share: 1\n", "above its maximum 0.95"),
        ("weight: 80\n", "unknown keys"),
        ("- a\n- b\n", "is a mapping"),
    ],
)
def test_bad_patient_files(write_yaml, text, fragment):
    with pytest.raises(SpecError, match=fragment):
        load_patient(write_yaml(text))


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"fsh_sperm_weigth": 0.5}, "unknown parameter 'fsh_sperm_weigth'. Did you mean 'fsh_sperm_weight'"),
        ({"fsh_sperm_weight": 1.5}, "'fsh_sperm_weight' = 1.5 is above its maximum 1 .*; use a value between 0 and 1"),
        ({"lh_leydig_k": float("nan")}, "'lh_leydig_k' = nan must be a finite non-negative number in IU/L"),
        ({"age": -3.0}, "'age' = -3.0 must be a finite non-negative number"),
        ({"t_clearance": "fast"}, "'t_clearance' = 'fast' must be a finite non-negative number in L/h"),
    ],
)
def test_the_python_api_checks_a_mans_parameters_like_the_patient_file(parameters, fragment):
    """`Patient(...)` built in Python gets the same checks as a patient file, naming the man and the field."""
    man = Patient("Bob", parameters)
    with pytest.raises(SpecError, match=f"patient 'Bob': .*{fragment}"):
        man.vector(load_model())


def test_a_man_may_carry_parameters_of_drugs_a_pruned_model_leaves_out():
    pruned = load_model(frozenset())
    assert "anastrozole_imax" not in pruned.parameters
    man = Patient("Bob", {"anastrozole_imax": 0.5})
    assert man.vector(pruned).shape == (len(pruned.parameters),)


def _baseline(phenotype: str):
    from hpgsim.simulation import simulate

    return simulate({"duration": "1 day"}, phenotype=phenotype).observables.iloc[0]


def test_all_seven_design_phenotypes_exist():
    from hpgsim.validation.studies import DESIGN_PHENOTYPES

    assert set(phenotype_names()) == set(DESIGN_PHENOTYPES)


@pytest.mark.parametrize(
    ("phenotype", "check"),
    [
        ("subfertile", lambda b: 300 < b.total_testosterone < 800 and b.te_ratio >= 10 and b.sperm_concentration < 20),
        ("subfertile_low_te", lambda b: b.te_ratio < 10 and b.sperm_concentration < 20),
        ("obese_hypogonadism", lambda b: b.total_testosterone < 350 and b.lh < 6),
        ("secondary_hypogonadism", lambda b: b.total_testosterone < 350 and b.lh <= 8),
        ("primary_hypogonadism", lambda b: b.total_testosterone < 350 and b.lh > 10 and b.fsh > 12 and b.inhibin_b < 125),
        # FSH low-normal, LH far lower: untreated GnRH-deficient men 2.8 +/- 0.4 IU/L (RepetitiveGnRH_IHH)
        # T and E2 castrate but not zero: adrenal androgens and their aromatisation remain (orchiectomy
        # ~15 ng/dL, Oefelein 2000; goserelin E2 ~5 pg/mL, PMC5792144); inhibin B undetectable from a
        # never-stimulated testis (untreated Kallmann < 10 pg/mL, physiology.yaml inhibin_b)
        (
            "hypogonadotropic_hypogonadism",
            lambda b: 5 < b.total_testosterone < 50 and 2 < b.estradiol < 10 and b.lh < 1.5 and b.fsh < 3.5 and b.inhibin_b < 10,
        ),
    ],
)
def test_typical_man_of_each_phenotype_has_its_defining_labs(phenotype, check):
    assert check(_baseline(phenotype))


IHH = "hypogonadotropic_hypogonadism"


def test_subgroup_takes_its_share_and_its_factors():
    """GnRH-deficient men: 22% make no sperm on gonadotropins (Muir meta-analysis: 78% reach > 0 M/mL)."""
    (group,) = get_phenotype(IHH).subgroups
    assert group.share == pytest.approx(0.22)
    men = sample_patients(IHH, 2000, seed=1)
    members = [m for m in men if f"({group.name})" in m.name]
    assert abs(len(members) / len(men) - 0.22) < 0.03
    assert all(m.parameters["sperm_production_capacity"] == 0.0 for m in members)
    others = [m for m in men if m not in members]
    assert all(m.parameters["sperm_production_capacity"] > 0 for m in others)
    assert typical_patient(IHH).parameters["sperm_production_capacity"] > 0  # the typical man is a responder


def test_a_subgroup_leaves_every_other_draw_unchanged(monkeypatch):
    """Membership has its own random stream: without the subgroup the same men keep all their other draws."""
    import dataclasses

    from hpgsim.population import phenotypes

    with_group = sample_patients(IHH, 200, seed=5)
    plain = dataclasses.replace(get_phenotype(IHH), subgroups=())
    monkeypatch.setattr(phenotypes, "get_phenotype", lambda name: plain)
    without = sample_patients(IHH, 200, seed=5)
    changed = 0
    for a, b in zip(with_group, without, strict=True):
        assert {k: v for k, v in a.parameters.items() if k != "sperm_production_capacity"} == {
            k: v for k, v in b.parameters.items() if k != "sperm_production_capacity"
        }
        changed += a.parameters["sperm_production_capacity"] != b.parameters["sperm_production_capacity"]
    assert 20 <= changed <= 70


@pytest.mark.parametrize(
    "subgroups, fragment",
    [
        ([{"name": "g", "share": 1.2, "parameters": {"leydig_capacity": {"factor": 0.5}}}], "'share' must be a fraction"),
        ([{"name": "g", "share": 0.2, "parameters": {"no_such": {"factor": 0.5}}}], "unknown parameter 'no_such'"),
        ([{"name": "g", "share": 0.2, "parameters": {"leydig_capacity": {"factor": -1}}}], "non-negative 'factor'"),
        ([{"name": "g", "share": 0.2, "parameters": {}}], "at least one parameter"),
        ([{"share": 0.2}], "needs a 'name'"),
        (
            [
                {"name": "a", "share": 0.6, "parameters": {"leydig_capacity": {"factor": 0.5}}},
                {"name": "b", "share": 0.5, "parameters": {"leydig_capacity": {"factor": 0.5}}},
            ],
            "add up to 1.1",
        ),
    ],
)
def test_bad_subgroups_are_named(monkeypatch, subgroups, fragment):
    import copy

    from hpgsim.population import phenotypes

    raw = copy.deepcopy(phenotypes._raw())
    raw["healthy"]["subgroups"] = subgroups
    monkeypatch.setattr(phenotypes, "_raw", lambda: raw)
    with pytest.raises(SpecError, match="phenotype 'healthy'") as err:
        get_phenotype("healthy")
    assert fragment in str(err.value)
