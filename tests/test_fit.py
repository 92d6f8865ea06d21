"""Personal fit and prediction (docs/fit.md): labs files, synthetic recovery, predict, errors, seeds.

Numbers drift while the model is calibrated: these tests check logic (coverage of known truths,
shrinkage where the labs inform, probabilities in [0, 1], reproducibility, error messages).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hpgsim.errors import FitError
from hpgsim.fit.labs import FITTED_QUANTITIES, load_labs, validate_labs

QUANTITIES = list(FITTED_QUANTITIES)
UNITS = {
    "total_testosterone": "ng/dL",
    "free_testosterone": "pg/mL",
    "shbg": "nmol/L",
    "estradiol": "pg/mL",
    "lh": "IU/L",
    "fsh": "IU/L",
    "inhibin_b": "pg/mL",
    "sperm_concentration": "million/mL",
}


def synthetic_labs(seed: int, phenotype: str = "subfertile") -> tuple[dict[str, Any], dict[str, float]]:
    """A man drawn from the phenotype, and three visits of noisy labs from his steady state."""
    from hpgsim import sample_patients, simulate
    from hpgsim.observe.labs import observe

    man = sample_patients(phenotype, 1, seed=seed)[0]
    true = simulate({"duration": "1 day"}, patient=man).observables.iloc[0]
    rng = np.random.default_rng(seed + 100)
    visits = []
    for day, hour in ((-60, 8.0), (-30, 9.5), (-5, 11.0)):
        v: dict[str, Any] = {"day": day, "time": f"{int(hour):02d}:{int(60 * (hour % 1)):02d}"}
        for q in QUANTITIES:
            val = float(observe(q, np.array([true[q]]), rng, hour=hour, age_years=man.parameters["age"])[0])
            v[q] = f"{val:.6g} {UNITS[q]}"
        visits.append(v)
    labs = {
        "patient": {
            "name": f"synthetic {seed}",
            "age": man.parameters["age"],
            "bmi": man.parameters["bmi"],
            "phenotype": phenotype,
        },
        "visits": visits,
    }
    return labs, man.parameters


def coverage(res: Any, truth: dict[str, float]) -> float:
    inside = [p["p5"] <= truth[name] <= p["p95"] for name, p in res.summary["parameters"].items()]
    return float(np.mean(inside))


@pytest.fixture(scope="module")
def fast_fit() -> tuple[Any, dict[str, float], dict[str, Any]]:
    import hpgsim

    labs, truth = synthetic_labs(3)
    return hpgsim.fit(labs, fast=True, seed=0), truth, labs


# ------------------------------------------------------------------------------------- recovery


def test_fast_fit_recovers_known_parameters(fast_fit: Any) -> None:
    res, truth, _ = fast_fit
    params = res.summary["parameters"]
    assert len(params) >= 6
    assert coverage(res, truth) >= 0.75, {k: (truth[k], p["p5"], p["p95"]) for k, p in params.items()}
    # SHBG is measured directly: its baseline is pinned down; sperm output is informed by semen analyses
    assert params["shbg_base"]["sd_ratio"] < 0.5
    assert params["sperm_production_capacity"]["sd_ratio"] < 0.9
    # the labs narrow the posterior on average, and never widen it much
    ratios = np.array([p["sd_ratio"] for p in params.values()])
    assert ratios.mean() < 0.9 and ratios.max() < 1.2
    # parameters no lab depends on are left at their prior, and said to be
    assert "motility_max" in res.summary["fixed_at_prior"]
    assert "motility_max" not in params


def test_fit_reports_diagnostics_and_unidentified_parameters(fast_fit: Any) -> None:
    res, _, _ = fast_fit
    s = res.summary
    assert s["method"] == "laplace" and s["diagnostics"]["converged"]
    unpinned = [k for k, p in s["parameters"].items() if p["sd_ratio"] > 0.8]
    for k in unpinned:
        assert any(f"cannot pin down {k}" in w for w in s["warnings"])
    assert "not a medical device" in s["disclaimer"]
    assert len(s["labs"]) == 3
    # posterior predictive of his labs: one row per result, mostly within the 90% interval
    pp = res.predictive
    assert len(pp) == 3 * len(QUANTITIES)
    assert (pp["predicted_p5"] <= pp["predicted_median"]).all() and (pp["predicted_median"] <= pp["predicted_p95"]).all()
    assert pp["within_90"].mean() >= 0.7


def test_fit_is_reproducible_with_seed(fast_fit: Any) -> None:
    import hpgsim

    res, _, labs = fast_fit
    again = hpgsim.fit(labs, fast=True, seed=0)
    np.testing.assert_allclose(again.draws.to_numpy(), res.draws.to_numpy(), rtol=1e-6)
    other = hpgsim.fit(labs, fast=True, seed=1)
    assert not np.allclose(other.draws.to_numpy(), res.draws.to_numpy())


def test_fit_writes_and_predict_reads_the_directory(fast_fit: Any, tmp_path: Path) -> None:
    import hpgsim
    from hpgsim.fit.api import load_fit

    res, _, _ = fast_fit
    out = res.save(tmp_path / "fit")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["fit.json", "draws.parquet", "posterior_predictive.csv", "posterior_predictive.png"]
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hpgsim-")]
    back = load_fit(out)
    np.testing.assert_allclose(back.draws.to_numpy(), res.draws.to_numpy())
    prot = {"name": "AI 4 weeks", "duration": "4 week", "regimens": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 day"}]}
    targets = ["estradiol<10@any", "total_testosterone>=350@14d", "sperm_concentration>=15 million/mL@4w"]
    pred = hpgsim.predict(out, prot, tmp_path / "pred", n_draws=6, targets=targets, seed=2, processes=1)
    assert (tmp_path / "pred" / "fan.png").is_file() and (tmp_path / "pred" / "bands.csv").is_file()
    b = pred.bands
    assert set(b["quantity"]) >= {"total_testosterone", "estradiol", "sperm_concentration"}
    assert (b["p5"] <= b["p25"] + 1e-12).all() and (b["p25"] <= b["p50"] + 1e-12).all() and (b["p75"] <= b["p95"] + 1e-12).all()
    assert len(pred.targets) == 3
    for t in pred.targets:
        assert 0.0 <= t["probability"] <= 1.0 and 0.0 <= t["probability_model_value"] <= 1.0
    # anastrozole lowers E2 and raises T in every draw (direction, not size)
    e2 = b[b["quantity"] == "estradiol"].set_index("day")["p50"]
    tt = b[b["quantity"] == "total_testosterone"].set_index("day")["p50"]
    assert e2.iloc[-1] < e2.iloc[0] and tt.iloc[-1] > tt.iloc[0]
    again = hpgsim.predict(res, prot, n_draws=6, targets=targets, seed=2, processes=1)
    np.testing.assert_allclose(again.bands[["p5", "p50", "p95"]].to_numpy(), b[["p5", "p50", "p95"]].to_numpy())
    assert [t["probability"] for t in again.targets] == [t["probability"] for t in pred.targets]


def test_far_out_labs_are_warned_about(fast_fit: Any) -> None:
    from hpgsim.fit.api import _prior_ranges, _range_warnings
    from hpgsim.fit.inference import build_problem

    _, _, labs = fast_fit
    odd = yaml.safe_load(yaml.safe_dump(labs))
    odd["visits"][0]["estradiol"] = "160 pg/mL"
    lab = validate_labs(odd)
    problem = build_problem(lab, [0, 1, 2])
    warns = _range_warnings(lab, [0, 1, 2], _prior_ranges(problem, 0))
    assert any("estradiol 160" in w and "outside the range" in w for w in warns)
    ok = _range_warnings(validate_labs(labs), [0, 1, 2], _prior_ranges(problem, 0))
    assert not any("estradiol" in w for w in ok)


@pytest.mark.slow
def test_nuts_recovers_known_parameters() -> None:
    """NUTS on three synthetic men: pooled 90% coverage >= 80%, clean diagnostics."""
    import hpgsim

    inside = []
    for seed in (3, 4, 5):
        labs, truth = synthetic_labs(seed)
        res = hpgsim.fit(labs, seed=seed, num_warmup=150, num_samples=150, num_chains=2)
        d = res.summary["diagnostics"]
        assert d["max_r_hat"] < 1.1
        assert d["divergences"] <= 5
        inside += [p["p5"] <= truth[k] <= p["p95"] for k, p in res.summary["parameters"].items()]
        assert res.summary["parameters"]["shbg_base"]["sd_ratio"] < 0.5
    assert np.mean(inside) >= 0.8


# ------------------------------------------------------------------------------------- bad input


def _labs(**visit: Any) -> dict[str, Any]:
    v = {"day": -3, "total_testosterone": "450 ng/dL"}
    v.update(visit)
    return {"patient": {"age": 35, "bmi": 26}, "visits": [v]}


@pytest.mark.parametrize(
    ("visit", "fragment"),
    [
        ({"total_testosterone": "-5 ng/dL"}, "negative"),
        ({"total_testosterone": "50000 ng/dL"}, "above the largest plausible value"),
        ({"estradiol": "30 furlongs"}, "estradiol"),
        ({"lh": "4 mg"}, "cannot be converted"),
        ({"total_testosterone": 450}, "has no unit"),
        ({"testosterone": "450 ng/dL"}, "Did you mean 'total_testosterone'"),
        ({"sperm_concentration": "12 bananas/mL"}, "million/mL"),
        ({"time": "25:99"}, "HH:MM"),
        ({"lh": "0 IU/L"}, "assay's limit"),
    ],
)
def test_bad_lab_values_are_rejected(visit: dict[str, Any], fragment: str) -> None:
    with pytest.raises(FitError) as e:
        validate_labs(_labs(**visit), source="his.yaml")
    msg = str(e.value)
    assert fragment in msg and "his.yaml" in msg and "visits[0]" in msg


def test_bad_dates_and_patient_are_rejected() -> None:
    bad_date = {"patient": {"age": 35, "bmi": 26}, "visits": [{"date": "2026-13-45", "lh": "4 IU/L"}]}
    with pytest.raises(FitError, match="YYYY-MM-DD"):
        validate_labs(bad_date)
    both = {"patient": {"age": 35, "bmi": 26}, "visits": [{"day": 1, "date": "2026-01-01", "lh": "4 IU/L"}]}
    with pytest.raises(FitError, match="exactly one of 'day'"):
        validate_labs(both)
    with pytest.raises(FitError, match=r"patient\.age"):
        validate_labs({"patient": {"bmi": 26}, "visits": [{"day": 0, "lh": "4 IU/L"}]})
    with pytest.raises(FitError, match="Did you mean 'subfertile'"):
        validate_labs({"patient": {"age": 35, "bmi": 26, "phenotype": "subfertil"}, "visits": [{"day": 0, "lh": "4 IU/L"}]})


def test_units_dates_and_censoring_are_read() -> None:
    raw = {
        "patient": {"age": 40, "bmi": 30},
        "visits": [
            {"date": "2026-03-01", "total_testosterone": "12 nmol/L", "estradiol": {"value": 110, "unit": "pmol/L"}},
            {"date": "2026-03-15", "time": "14:30", "lh": "<0.2 IU/L", "sperm_concentration": "0 million/mL"},
        ],
    }
    lab = validate_labs(raw)
    v0, v1 = lab.visits
    assert v1.day - v0.day == 14 and v1.hour == pytest.approx(14.5) and v0.hour == 8.0
    got = {o.quantity: o for v in lab.visits for o in v.observations}
    assert got["total_testosterone"].value == pytest.approx(12 * 28.84)
    assert got["estradiol"].value == pytest.approx(110 / 3.671, rel=1e-3)
    assert got["lh"].censored and got["lh"].value == pytest.approx(0.2)
    assert got["sperm_concentration"].censored  # azoospermia: below 0.01 million/mL


def test_visits_during_treatment_are_rejected_clearly() -> None:
    from hpgsim.fit.api import steady_visits

    raw: dict[str, Any] = {
        "patient": {"age": 35, "bmi": 26},
        "protocol": {"duration": "12 week", "regimens": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 day"}]},
        "visits": [{"day": -10, "lh": "4 IU/L"}, {"day": 30, "lh": "6 IU/L"}],
    }
    with pytest.raises(FitError, match=r"visits\[1\].*during treatment with anastrozole"):
        steady_visits(validate_labs(raw))
    raw["visits"][1]["day"] = 84 + 60  # after the hormone washout: untreated again
    used, notes = steady_visits(validate_labs(raw))
    assert used == [0, 1] and notes


def test_bad_targets_are_rejected() -> None:
    from hpgsim.fit.api import parse_target

    t = parse_target("total_testosterone>=12 nmol/L@12w")
    assert t.threshold == pytest.approx(12 * 28.84) and t.day == 84
    assert parse_target("estradiol<10@any").day is None
    for bad, frag in [
        ("spermconc>=15@120d", "unknown quantity"),
        ("estradiol<10", "write quantity"),
        ("lh>5@soon", "not understood"),
    ]:
        with pytest.raises(FitError, match=frag):
            parse_target(bad)


def test_cli_bad_labs_exit_2_and_write_nothing(tmp_path: Path) -> None:
    from hpgsim.cli import app

    f = tmp_path / "labs.yaml"
    f.write_text(yaml.safe_dump(_labs(total_testosterone="50000 ng/dL")), encoding="utf-8")
    out = tmp_path / "fit"
    r = CliRunner().invoke(app, ["fit", str(f), "--out", str(out), "--fast"])
    assert r.exit_code == 2, r.output
    assert "50000" in r.output and "Traceback" not in r.output
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".hpgsim-")]
    r = CliRunner().invoke(app, ["predict", "--fit", str(tmp_path / "nope"), "--protocol", str(f), "--out", str(tmp_path / "p")])
    assert r.exit_code == 2 and "not a fit directory" in r.output


def test_example_labs_file_is_valid() -> None:
    lab = load_labs(Path(__file__).parents[1] / "examples" / "labs" / "subfertile_man.yaml")
    assert len(lab.visits) == 3 and lab.phenotype == "subfertile"


def test_jax_steady_state_matches_the_numpy_engine_and_its_gradient(fast_fit: Any) -> None:
    """The likelihood's steady state (Newton + implicit derivative) equals hpgsim's steady state, and
    its gradient equals finite differences."""
    from hpgsim.engine.codegen import numpy_functions
    from hpgsim.engine.steady import steady_state
    from hpgsim.fit import inference as inf
    from hpgsim.fit.api import PREDICTIVE_DRAWS

    _, _, labs = fast_fit
    problem = inf.build_problem(validate_labs(labs), [0, 1, 2])
    k = len(problem.fit_names)
    z = np.random.default_rng(0).standard_normal((PREDICTIVE_DRAWS, k))  # prior draws (the compiled shape)
    y, ok = inf.batch_labs(problem, z)
    assert ok.all()
    spec = problem.spec
    qi = [spec.observable_names.index(q) for q in inf.QUANTITIES]
    for i in range(8):
        p = problem.base.copy()
        p[problem.fit_index] = problem.typical * np.exp(problem.sigma * z[i])
        ref = np.asarray(numpy_functions(spec).observe(steady_state(spec, p)[:, None], p))[qi, 0]
        np.testing.assert_allclose(y[i], ref, rtol=1e-6)
    vg = inf._value_and_grad_fn()
    data = inf._as_jax(inf.model_data(problem))
    z0 = 0.3 * z[0]
    _, g = vg(z0, data)
    for j in (0, k // 2, k - 1):
        e = np.zeros(k)
        e[j] = 1e-5
        fd = (float(vg(z0 + e, data)[0]) - float(vg(z0 - e, data)[0])) / 2e-5
        assert float(g[j]) == pytest.approx(fd, rel=1e-4, abs=1e-6)


def test_out_that_is_a_file_is_rejected_before_any_work(tmp_path: Path) -> None:
    import hpgsim

    f = tmp_path / "taken"
    f.write_text("x", encoding="utf-8")
    with pytest.raises(FitError, match="not a directory"):
        hpgsim.fit({"patient": {"age": 35, "bmi": 26}, "visits": [{"day": 0, "lh": "4 IU/L"}]}, out=f, fast=True)
    assert f.read_text(encoding="utf-8") == "x"
