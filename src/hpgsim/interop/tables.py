"""Library-grade outputs: simulation results as an xarray Dataset, a tidy pandas table, Parquet.

- :func:`to_dataset`: dims ``patient`` x ``time`` (days since day 0); one variable per quantity, each
  with its unit in ``attrs["units"]``; ``flags`` per man; provenance (model digest,
  engine, protocol, disclaimer) in the Dataset's attrs.
- :func:`to_tidy`: long table ``patient, day, quantity, value, unit`` (one row per number).
- :func:`write_parquet`: the tidy table (or the wide table) as Parquet, with the provenance in the
  file's metadata, written atomically.

All of them read :class:`~hpgsim.simulation.SimulationResult` objects and compute no dynamics.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpgsim.errors import HpgsimError
from hpgsim.simulation import DISCLAIMER, SimulationResult
from hpgsim.units import canonical_unit


def _as_list(results: SimulationResult | Sequence[SimulationResult]) -> list[SimulationResult]:
    out = [results] if isinstance(results, SimulationResult) else list(results)
    if not out:
        raise HpgsimError("no results to convert: pass one SimulationResult or a non-empty list of them.")
    return out


def _check_same_grid(results: list[SimulationResult]) -> None:
    first = results[0].observables
    for r in results[1:]:
        if list(r.observables.columns) != list(first.columns):
            raise HpgsimError(
                f"results of {results[0].patient!r} and {r.patient!r} have different quantities (different protocols?); "
                "convert results of one protocol at a time."
            )
        if not np.array_equal(r.observables.index.to_numpy(), first.index.to_numpy()):
            raise HpgsimError(
                f"results of {results[0].patient!r} and {r.patient!r} have different time grids; "
                "simulate them with the same protocol and output_step_h."
            )


def provenance(results: SimulationResult | Sequence[SimulationResult]) -> dict[str, Any]:
    """What the results came from: hpgsim version, model digest(s), engine, protocol, disclaimer."""
    from importlib.metadata import version

    __version__ = version("hpgsim")  # not `from hpgsim import`: that would import the top layer (trial, sensitivity)

    rs = _as_list(results)
    digests = sorted({r.model_digest for r in rs})
    prot = rs[0].protocol
    return {
        "hpgsim_version": __version__,
        "model_digest": digests[0] if len(digests) == 1 else ",".join(digests),
        "engine": ",".join(sorted({r.engine for r in rs})),
        "protocol": prot.name,
        "protocol_duration_days": prot.duration_days,
        "regimens": json.dumps(
            [
                {"drug": g.drug, "dose": g.dose, "dose_unit": g.dose_unit, "route": g.route, "interval_h": g.interval_h}
                for g in prot.regimens
            ]
        ),
        "disclaimer": DISCLAIMER,
    }


def to_dataset(results: SimulationResult | Sequence[SimulationResult]) -> Any:
    """Results as an ``xarray.Dataset`` with dims (patient, time).

    Args:
        results: one result or several of the same protocol and output grid (e.g. from
            :func:`hpgsim.simulate_population`).

    Returns:
        Dataset: coordinate ``time`` in days (``units = "day"``), ``patient`` labels; one float variable
        per canonical quantity and drug concentration with ``attrs["units"]``;
        ``flags`` per man ("; "-joined text); provenance in ``attrs``.

    Raises:
        HpgsimError: no results, or results with different quantities or time grids.
    """
    import xarray as xr

    rs = _as_list(results)
    _check_same_grid(rs)
    first = rs[0].observables
    names = [r.patient for r in rs]
    if len(set(names)) != len(names):
        raise HpgsimError("results have duplicate patient labels; give each man a unique name.")
    data = np.stack([r.observables.to_numpy(dtype=float) for r in rs])  # (patient, time, quantity)
    variables: dict[str, Any] = {}
    for j, q in enumerate(first.columns):
        variables[q] = xr.Variable(("patient", "time"), data[:, :, j], attrs={"units": canonical_unit(q), "long_name": q})
    variables["flags"] = xr.Variable(("patient",), np.array(["; ".join(r.flags) for r in rs], dtype=object))
    ds = xr.Dataset(
        variables,
        coords={
            "patient": ("patient", np.array(names, dtype=object)),
            "time": ("time", first.index.to_numpy(dtype=float), {"units": "day", "long_name": "time since day 0 (first dose)"}),
        },
        attrs=provenance(rs),
    )
    return ds


def to_tidy(results: SimulationResult | Sequence[SimulationResult]) -> pd.DataFrame:
    """Results as a long table: columns ``patient, day, quantity, value, unit`` (one row per number)."""
    rs = _as_list(results)
    frames = []
    for r in rs:
        df = r.observables.reset_index().melt(id_vars="day", var_name="quantity", value_name="value")
        df.insert(0, "patient", r.patient)
        frames.append(df)
    tidy = pd.concat(frames, ignore_index=True)
    units = {q: canonical_unit(q) for q in tidy["quantity"].unique()}
    tidy["unit"] = tidy["quantity"].map(units)
    return tidy[["patient", "day", "quantity", "value", "unit"]]


def write_parquet(results: SimulationResult | Sequence[SimulationResult], path: str | Path, tidy: bool = True) -> Path:
    """Write results to a Parquet file (tidy long table, or wide with ``patient, day`` + one column per quantity).

    The provenance (:func:`provenance`) and, for the wide table, the unit of each column are stored in
    the file's key-value metadata. The file appears complete or not at all (temp file + rename).

    Raises:
        HpgsimError: the target directory does not exist or the path is a directory.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rs = _as_list(results)
    target = Path(path)
    if target.is_dir():
        raise HpgsimError(f"{target}: is a directory; give a file name such as results.parquet.")
    if not target.parent.is_dir():
        raise HpgsimError(f"{target}: the directory {target.parent} does not exist. Create it first.")
    if tidy:
        df = to_tidy(rs)
        units: dict[str, str] = {}
    else:
        frames = []
        for r in rs:
            d = r.observables.reset_index()
            d.insert(0, "patient", r.patient)
            frames.append(d)
        df = pd.concat(frames, ignore_index=True)
        units = {q: canonical_unit(q) for q in df.columns if q not in ("patient", "day")}
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = {k.encode(): str(v).encode() for k, v in provenance(rs).items()}
    meta[b"hpgsim_units"] = json.dumps(units | {"day": "day"}).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
