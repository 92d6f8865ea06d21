"""Sensitivity analysis: the ranking code on analytic functions with a known ranking, the parameter
ranges, a tiny real run through the CLI, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from hpgsim.cli import app
from hpgsim.errors import SpecError
from hpgsim.sensitivity import Problem, analyse_function, parameter_problem, sensitivity

runner = CliRunner()
TOY = Problem(("a", "b", "c", "d"), ((0.0, 1.0),) * 4)
AI = {"name": "AI", "duration": "2 week", "regimens": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 day"}]}


def _toy(x: np.ndarray) -> np.ndarray:
    """10 a + 3 b^2 + 0 c + 1 d: known order a > b > d > c (c has no effect)."""
    return 10 * x[:, 0] + 3 * x[:, 1] ** 2 + 0 * x[:, 2] + 1 * x[:, 3]


@pytest.mark.parametrize(("method", "n"), [("morris", 30), ("sobol", 256)])
def test_known_ranking_of_an_analytic_function(method, n):
    table = analyse_function(_toy, TOY, method=method, n=n, seed=1)
    assert table["parameter"].tolist() == ["a", "b", "d", "c"]
    assert table["rank"].tolist() == [1, 2, 3, 4]
    c = table.set_index("parameter").loc["c"]
    assert c["importance"] == pytest.approx(0.0, abs=1e-2)
    if method == "morris":
        a = table.set_index("parameter").loc["a"]
        assert a["mu_star"] == pytest.approx(10.0, rel=1e-6)  # SALib scales effects to the range: slope 10 x width 1
        assert a["sigma"] == pytest.approx(0.0, abs=1e-9)  # linear: no interaction or curvature
    else:
        st = table.set_index("parameter")["ST"]
        # analytic total indices: Var(10a)=100/12, Var(3b^2)=9*4/45, Var(d)=1/12
        v = np.array([100 / 12, 9 * 4 / 45, 1 / 12])
        assert st[["a", "b", "d"]].to_numpy() == pytest.approx(v / v.sum(), abs=0.05)


def test_parameter_ranges_are_the_central_90_percent_of_each_log_normal():
    from hpgsim.population.phenotypes import get_phenotype

    prob = parameter_problem("subfertile", AI)
    ph = get_phenotype("subfertile")
    assert "anastrozole_cl" in prob.names and "letrozole_cl" not in prob.names  # only the protocol's model
    for name, (lo, hi) in zip(prob.names, prob.bounds, strict=True):
        s = np.sqrt(np.log1p(ph.cv[name] ** 2))
        dist = stats.lognorm(s=s, scale=ph.typical[name])
        assert np.exp(lo) == pytest.approx(dist.ppf(0.05), rel=1e-9)
        assert np.exp(hi) == pytest.approx(dist.ppf(0.95), rel=1e-9)


def test_tiny_real_run_through_the_cli(tmp_path):
    import yaml

    proto = tmp_path / "ai.yaml"
    proto.write_text(yaml.safe_dump(AI))
    out = tmp_path / "sens"
    args = ["sensitivity", "--phenotype", "healthy", "--protocol", str(proto), "--output", "estradiol", "--day", "14"]
    args += ["--statistic", "percent_change", "--n", "2", "--out", str(out), "--processes", "1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "sensitivity.csv").set_index("parameter")
    # the fall in E2 on an aromatase inhibitor depends on the drug's clearance; semen parameters cannot move E2
    # (germ-cell states share the solver's error control, rtol 1e-6, so they move it by solver noise only:
    # 2e-5 percentage points for sperm_production_capacity on the 2026-11-28 model)
    assert table.loc["anastrozole_cl", "mu_star"] > 1.0
    for p in ("motility_max", "semen_volume_max", "sperm_production_capacity"):
        assert table.loc[p, "mu_star"] == pytest.approx(0.0, abs=1e-3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == 2 * (len(table) + 1) and "not a medical device" in summary["disclaimer"]
    assert (out / "sensitivity.png").stat().st_size > 5000


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"output": "estrogen"}, "unknown quantity"),
        ({"day": 30.0}, "between 0 and the protocol's duration"),
        ({"method": "sobol", "n": 10}, "power of 2"),
        ({"phenotype": "healty"}, "Did you mean 'healthy'"),
        ({"statistic": "percent_change", "day": 0.0}, "a change needs a later day"),
    ],
)
def test_bad_input_is_refused_before_any_simulation(kwargs, fragment):
    args = {"phenotype": "healthy", "protocol": AI, "output": "estradiol", "day": 14.0, "n": 2, "processes": 1}
    args.update(kwargs)
    with pytest.raises(SpecError, match=fragment):
        sensitivity(**args)  # type: ignore[arg-type]
