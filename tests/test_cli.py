"""The command-line contract (DESIGN.md section 5): outputs, units, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from hpgsim.cli import app

runner = CliRunner()
AI = "name: AI\nduration: 2 week\nregimens:\n  - {drug: anastrozole, dose: 1 mg, every: 1 day}\n"


def test_simulate_writes_timeseries_summary_and_plot(tmp_path, write_yaml):
    proto = write_yaml(AI)
    out = tmp_path / "out"
    res = runner.invoke(app, ["simulate", str(proto), "--out", str(out)])
    assert res.exit_code == 0, res.output
    ts = pd.read_csv(out / "timeseries.csv")
    assert list(ts.columns[:3]) == ["day", "total_testosterone", "free_testosterone"]
    assert ts["day"].tolist() == list(range(15))
    assert not ts.isna().any().any()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["baseline_vs_end"]["estradiol"]["percent_change"] < -20
    assert summary["baseline_vs_end"]["estradiol"]["unit"] == "pg/mL"
    assert "not a medical device" in summary["disclaimer"]
    assert (out / "plot.png").stat().st_size > 10000


def test_si_units_convert_testosterone_and_estradiol(tmp_path, write_yaml):
    proto = write_yaml(AI)
    conv, si = tmp_path / "c", tmp_path / "s"
    assert runner.invoke(app, ["simulate", str(proto), "--out", str(conv)]).exit_code == 0
    assert runner.invoke(app, ["simulate", str(proto), "--out", str(si), "--units", "si"]).exit_code == 0
    a, b = pd.read_csv(conv / "timeseries.csv"), pd.read_csv(si / "timeseries.csv")
    assert b.total_testosterone.iloc[0] == pytest.approx(a.total_testosterone.iloc[0] / 28.84, rel=1e-5)
    assert b.estradiol.iloc[0] == pytest.approx(a.estradiol.iloc[0] * 3.671, rel=1e-5)
    assert b.free_testosterone.iloc[0] == pytest.approx(a.free_testosterone.iloc[0] * 3.467, rel=1e-5)
    assert json.loads((si / "summary.json").read_text())["baseline_vs_end"]["total_testosterone"]["unit"] == "nmol/L"


def test_population_run_has_patient_column(tmp_path, write_yaml):
    proto = write_yaml(AI)
    out = tmp_path / "pop"
    res = runner.invoke(app, ["simulate", str(proto), "--out", str(out), "--n", "3", "--seed", "1", "--processes", "1"])
    assert res.exit_code == 0, res.output
    ts = pd.read_csv(out / "timeseries.csv")
    assert ts.columns[1] == "patient" and ts.patient.nunique() == 3
    assert json.loads((out / "summary.json").read_text())["n"] == 3


def test_out_of_range_dose_runs_with_a_flag(tmp_path, write_yaml):
    proto = write_yaml("duration: 1 week\nregimens:\n  - {drug: anastrozole, dose: 20 mg, every: 1 day}\n")
    out = tmp_path / "o"
    res = runner.invoke(app, ["simulate", str(proto), "--out", str(out)])
    assert res.exit_code == 0
    flags = json.loads((out / "summary.json").read_text())["flags"]
    assert any("outside the range the model was validated on" in f for f in flags)


@pytest.mark.parametrize(
    ("text", "args", "fragment"),
    [
        ("duration: 2 week\nregimens:\n  - {drug: anastrazol, dose: 1 mg, every: 1 day}\n", [], "Did you mean 'anastrozole'"),
        ("duration: 2 week\nregimens:\n  - {drug: anastrozole, dose: 1, every: 1 day}\n", [], "no unit"),
        ("duration: 2 week\nregimens:\n  - {drug: anastrozole, dose: -1 mg, every: 1 day}\n", [], "greater than zero"),
        ("duration: 2 week\nregimens:\n  - {drug: anastrozole, dose: 1 mg, every: 10 s}\n", [], "shorter than one minute"),
        ("duration: 25 year\n", [], "20-year limit"),
        (
            "duration: 2 week\nregimens:\n  - {drug: anastrozole, dose: 1 mg, every: 1 day, start: 5 day, stop: 2 day}\n",
            [],
            "not after start",
        ),
        ("duration: [2 week\n", [], "not valid YAML"),
        ("duration: 2 week\n", ["--phenotype", "athlete"], "unknown phenotype"),
        (
            "duration: 2 week\nregimens:\n  - {drug: clomiphene_citrate, dose: 25 mg, every: 1 day, route: nasal}\n",
            [],
            "has no route 'nasal'; use one of ['oral']",
        ),
    ],
)
def test_bad_input_exits_2_with_one_paragraph_and_writes_nothing(tmp_path, write_yaml, text, args, fragment):
    proto = write_yaml(text)
    out = tmp_path / "never"
    res = runner.invoke(app, ["simulate", str(proto), "--out", str(out), *args])
    assert res.exit_code == 2
    assert fragment in " ".join(res.output.split())
    assert "Traceback" not in res.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hpgsim-")]


def test_error_text_in_square_brackets_is_printed_as_written(tmp_path, write_yaml):
    """Rich would read "[low, high]" in a message as markup and drop it; errors are printed verbatim."""
    study = write_yaml(
        "id: X2000\ncitation: X\nevidence: abstract\n"
        "population: {description: d, phenotype: healthy, age_years: {median: 36, iqr: [44, 30]}}\n"
        "arms:\n  - name: A\n    n: 5\n    protocol: {duration: 1 week}\n"
        "    observations:\n      - {quantity: lh, unit: IU/L, day: 0, stat: mean, value: 4}\n"
    )
    res = runner.invoke(app, ["validate", str(study), "--json", str(tmp_path / "o.json")])
    assert res.exit_code == 2
    assert "'iqr' must be [low, high], got [44.0, 30.0]" in " ".join(res.output.split())
    assert not (tmp_path / "o.json").exists()


def test_missing_protocol_file_exits_2(tmp_path):
    res = runner.invoke(app, ["simulate", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not found" in res.output


def test_drugs_and_phenotypes_list_what_exists():
    res = runner.invoke(app, ["drugs"])
    assert res.exit_code == 0
    for name in ["anastrozole", "clomiphene_citrate", "gonadorelin", "testosterone_gel", "Mauras 2009"]:
        assert name in res.output
    res = runner.invoke(app, ["phenotypes", "--n", "3"])
    assert res.exit_code == 0, res.output
    assert "healthy" in res.output and "hypogonadotropic_hypogonadism" in res.output


@pytest.mark.parametrize("args", [["--max-iterations", "0"], ["--cohort-passes", "1", "--cohort-n", "5"]])
def test_calibrate_rejects_bad_budgets_before_fitting(args):
    r = runner.invoke(app, ["calibrate", "--no-write", *args])
    assert r.exit_code == 2
    assert args[-2] in r.output and "Traceback" not in r.output
