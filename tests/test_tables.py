"""Library-grade outputs: xarray Dataset, tidy table and Parquet carry the same numbers, units and provenance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hpgsim.errors import HpgsimError
from hpgsim.interop.tables import to_dataset, to_tidy, write_parquet
from hpgsim.population.phenotypes import sample_patients
from hpgsim.simulation import DISCLAIMER, simulate, simulate_population

PROT = {"duration": "2 week", "regimens": [{"drug": "anastrozole", "dose": "1 mg", "every": "1 day"}]}


@pytest.fixture(scope="module")
def results():
    return simulate_population(PROT, sample_patients("healthy", 3, seed=1), processes=1)


def test_dataset_has_patient_and_time_dims_units_and_provenance(results):
    ds = to_dataset(results)
    assert ds["total_testosterone"].dims == ("patient", "time")
    assert ds.sizes == {"patient": 3, "time": 15}
    assert list(ds["patient"].values) == [r.patient for r in results]
    assert ds["time"].attrs["units"] == "day"
    assert ds["total_testosterone"].attrs["units"] == "ng/dL"
    assert ds["anastrozole_concentration"].attrs["units"] == "ng/mL"
    assert ds["lh"].attrs["units"] == "IU/L"
    for i, r in enumerate(results):
        np.testing.assert_array_equal(ds["estradiol"].values[i], r.observables["estradiol"].to_numpy())
    assert ds.attrs["model_digest"] == results[0].model_digest
    assert ds.attrs["disclaimer"] == DISCLAIMER
    assert ds.attrs["engine"] == "roadrunner"
    assert "flags" in ds and ds["flags"].dims == ("patient",)
    # a single result works too
    one = to_dataset(results[0])
    assert one.sizes["patient"] == 1


def test_tidy_table_round_trips_to_the_wide_observables(results):
    tidy = to_tidy(results)
    assert list(tidy.columns) == ["patient", "day", "quantity", "value", "unit"]
    n_q = results[0].observables.shape[1]
    assert len(tidy) == 3 * 15 * n_q
    assert set(tidy.loc[tidy.quantity == "estradiol", "unit"]) == {"pg/mL"}
    r = results[1]
    wide = tidy[tidy.patient == r.patient].pivot(index="day", columns="quantity", values="value")[r.observables.columns]
    pd.testing.assert_frame_equal(wide, r.observables, check_names=False)


@pytest.mark.parametrize("tidy", [True, False])
def test_parquet_round_trip_with_metadata(results, tmp_path, tidy):
    import pyarrow.parquet as pq

    path = write_parquet(results, tmp_path / "trial.parquet", tidy=tidy)
    back = pd.read_parquet(path)
    if tidy:
        pd.testing.assert_frame_equal(back, to_tidy(results))
    else:
        assert list(back.columns[:2]) == ["patient", "day"] and len(back) == 3 * 15
    meta = pq.read_schema(path).metadata
    assert meta[b"disclaimer"].decode() == DISCLAIMER
    assert meta[b"model_digest"].decode() == results[0].model_digest
    assert [p.name for p in tmp_path.iterdir()] == ["trial.parquet"]  # no temporary file left


def test_bad_inputs_are_clear_errors_and_write_nothing(results, tmp_path):
    with pytest.raises(HpgsimError, match="no results"):
        to_dataset([])
    other = simulate({"duration": "3 week"})
    with pytest.raises(HpgsimError, match=r"different quantities|different time grids"):
        to_dataset([results[0], other])
    with pytest.raises(HpgsimError, match="does not exist"):
        write_parquet(results, tmp_path / "missing" / "x.parquet")
    with pytest.raises(HpgsimError, match="duplicate patient"):
        to_dataset([results[0], results[0]])
    assert list(tmp_path.iterdir()) == []
