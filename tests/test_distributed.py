"""Chunked, resumable populations (hpgsim.distributed): Dask == local, resume, manifest, retries, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hpgsim.distributed as dist
from hpgsim.distributed import ChunkError, ResumeError, SchedulerError, parse_scheduler, read_frame, read_results, run_population
from hpgsim.population.phenotypes import sample_patients
from hpgsim.simulation import simulate

PROTOCOL = {
    "name": "short",
    "duration": "10 day",
    "regimens": [
        {"drug": "anastrozole", "dose": "1 mg", "every": "1 day"},
        {"drug": "hcg", "dose": "500 IU", "every": "2 day"},
    ],
}


@pytest.fixture(scope="module")
def men():
    return sample_patients("healthy", 7, seed=11)


@pytest.fixture(scope="module")
def reference(men):
    return [simulate(PROTOCOL, m) for m in men]


def _same(a, b) -> None:
    assert [r.patient for r in a] == [r.patient for r in b]
    for x, y in zip(a, b, strict=True):
        assert list(x.observables.columns) == list(y.observables.columns)
        np.testing.assert_array_equal(x.observables.index.to_numpy(), y.observables.index.to_numpy())
        np.testing.assert_allclose(x.observables.to_numpy(), y.observables.to_numpy(), rtol=1e-12, atol=0)
        assert x.flags == y.flags and x.model_digest == y.model_digest and x.engine == y.engine


@pytest.mark.parametrize("text", ["proc:2", "processes:0", "processes:two", "tcp://host", "http://localhost:8786", "", "dask"])
def test_bad_scheduler_strings_are_rejected_with_the_accepted_forms(text):
    with pytest.raises(SchedulerError, match=r"'local'.*'processes:N'.*'tcp://host:port'|at least 1"):
        parse_scheduler(text)


def test_scheduler_strings():
    assert parse_scheduler("local").kind == "local"
    assert parse_scheduler("processes:3").workers == 3
    assert parse_scheduler("tcp://127.0.0.1:8786").address == "tcp://127.0.0.1:8786"


def test_bad_scheduler_fails_before_any_work(tmp_path, men):
    with pytest.raises(SchedulerError):
        run_population(PROTOCOL, men, scheduler="processes:x", out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_local_chunks_stream_to_parquet_and_read_back_exactly(tmp_path, men, reference):
    seen: list[tuple[int, int]] = []
    out = tmp_path / "run"
    res = run_population(PROTOCOL, men, chunk_size=3, out_dir=out, progress=lambda d, n: seen.append((d, n)))
    _same(res, reference)
    assert sorted(p.name for p in out.iterdir()) == [
        "chunk-00000.parquet",
        "chunk-00001.parquet",
        "chunk-00002.parquet",
        "manifest.json",
    ]
    assert seen == [(3, 7), (6, 7), (7, 7)]
    _same(read_results(out, PROTOCOL), reference)  # float64 round-trips through Parquet bitwise
    frame = read_frame(out)
    assert list(frame.columns[:3]) == ["patient_index", "patient", "day"]
    assert frame["patient_index"].nunique() == 7 and len(frame) == 7 * 11
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_patients"] == 7 and [c["count"] for c in manifest["chunks"]] == [3, 3, 1]


def test_resume_recomputes_only_the_missing_chunk(tmp_path, men, reference, monkeypatch):
    out = tmp_path / "run"
    run_population(PROTOCOL, men, chunk_size=3, out_dir=out)
    (out / "chunk-00001.parquet").unlink()
    kept = (out / "chunk-00000.parquet").stat().st_mtime_ns
    solved: list[list[str]] = []
    real = dist.solve_chunk

    def counting(protocol, patients, *args):
        solved.append([m.name for m in patients])
        return real(protocol, patients, *args)

    monkeypatch.setattr(dist, "solve_chunk", counting)
    res = run_population(PROTOCOL, men, chunk_size=3, out_dir=out, resume=True)
    assert solved == [[m.name for m in men[3:6]]]
    assert (out / "chunk-00000.parquet").stat().st_mtime_ns == kept
    _same(res, reference)
    solved.clear()
    run_population(PROTOCOL, men, chunk_size=3, out_dir=out, resume=True)  # all done: nothing to solve
    assert solved == []


def test_resume_refuses_another_run(tmp_path, men):
    out = tmp_path / "run"
    run_population(PROTOCOL, men[:4], chunk_size=2, out_dir=out)
    with pytest.raises(ResumeError, match="resume=True"):  # an existing run is never overwritten silently
        run_population(PROTOCOL, men[:4], chunk_size=2, out_dir=out)
    other = {**PROTOCOL, "duration": "12 day"}
    with pytest.raises(ResumeError, match="protocol_digest"):
        run_population(other, men[:4], chunk_size=2, out_dir=out, resume=True)
    with pytest.raises(ResumeError, match="patients_hash"):
        run_population(PROTOCOL, men[1:5], chunk_size=2, out_dir=out, resume=True)
    with pytest.raises(ResumeError, match="chunk_size"):
        run_population(PROTOCOL, men[:4], chunk_size=3, out_dir=out, resume=True)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(ResumeError, match="cannot read the manifest"):
        run_population(PROTOCOL, men[:4], chunk_size=2, out_dir=out, resume=True)


def test_failed_chunk_is_retried_then_reported_never_dropped(tmp_path, men, monkeypatch):
    real = dist.solve_chunk
    attempts: dict[str, int] = {}
    flaky = men[2].name

    def failing(protocol, patients, *args, limit):
        names = [m.name for m in patients]
        if flaky in names:
            attempts[flaky] = attempts.get(flaky, 0) + 1
            if attempts[flaky] <= limit:
                raise RuntimeError("worker lost")
        return real(protocol, patients, *args)

    monkeypatch.setattr(dist, "solve_chunk", lambda *a: failing(*a, limit=2))
    res = run_population(PROTOCOL, men[:4], chunk_size=2, retries=2)
    assert attempts[flaky] == 3 and len(res) == 4  # two failures, third attempt succeeds

    attempts.clear()
    monkeypatch.setattr(dist, "solve_chunk", lambda *a: failing(*a, limit=99))
    out = tmp_path / "run"
    with pytest.raises(ChunkError, match=rf"chunk 1 \(patients 2-3: {men[2].name}, {men[3].name}\).*worker lost.*resume"):
        run_population(PROTOCOL, men[:6], chunk_size=2, retries=2, out_dir=out)
    assert attempts[flaky] == 3
    assert {p.name for p in out.glob("chunk-*")} == {"chunk-00000.parquet", "chunk-00002.parquet"}


def test_two_worker_dask_cluster_gives_exactly_the_local_results(tmp_path, men, reference):
    """A 2-worker LocalCluster (separate processes, chunks spread over both) == the in-process run."""
    out = tmp_path / "dask"
    res = run_population(PROTOCOL, men, scheduler="processes:2", chunk_size=2, out_dir=out)
    _same(res, reference)
    _same(read_results(out, PROTOCOL), reference)


def test_output_folder_that_is_a_file(tmp_path: Path, men):
    f = tmp_path / "x"
    f.write_text("")
    with pytest.raises(dist.HpgsimError, match="not a folder"):
        run_population(PROTOCOL, men[:2], out_dir=f)


def test_validate_rejects_a_bad_scheduler_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from hpgsim.cli import app

    out = tmp_path / "v.json"
    res = CliRunner().invoke(app, ["validate", "--scheduler", "procs:2", "--json", str(out)])
    assert res.exit_code == 2 and "processes:N" in " ".join(res.output.split())
    assert not out.exists()


def test_existing_cluster_by_tcp_address(men, reference):
    """`tcp://host:port` connects to a running cluster (here a local one) and leaves it running."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40) as cluster:
        res = run_population(PROTOCOL, men[:3], scheduler=cluster.scheduler_address, chunk_size=2)
        assert cluster.status.name == "running"
    _same(res, reference[:3])


def test_worker_pool_is_kept_and_renewed_when_the_environment_changes(monkeypatch):
    from hpgsim.simulation import worker_pool

    a = worker_pool(2)
    assert worker_pool(2) is a  # kept between population runs
    monkeypatch.setenv("HPGSIM_UNCALIBRATED", "1")  # workers read HPGSIM_* when they start
    b = worker_pool(2)
    assert b is not a
    monkeypatch.delenv("HPGSIM_UNCALIBRATED")
    assert worker_pool(2) is not b
