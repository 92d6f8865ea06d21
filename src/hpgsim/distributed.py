"""Populations in chunks, in-process or on Dask, streamed to Parquet and resumable (issue 5).

`run_population` is the one entry for large virtual cohorts (validation and virtual trials call it):

- ``scheduler="local"`` (default): this process, or a local process pool with ``processes > 1``;
  Dask is not imported.
- ``scheduler="processes:N"``: a Dask ``LocalCluster`` of N single-threaded worker processes.
- ``scheduler="tcp://host:port"``: an existing Dask cluster (its workers need hpgsim installed).

Patients are cut into chunks; each chunk is solved on a worker by the chosen engine (one RoadRunner per
worker process for the CPU engine, one ``vmap``-ed batch for the JAX engine). With ``out_dir``, every
finished chunk is written at once to ``out_dir/chunk-NNNNN.parquet`` (written to a temporary file, then
renamed: a chunk file is whole or absent), next to ``manifest.json`` which records what the run is
(protocol, model, patients, engine, settings). ``resume=True`` reuses the finished chunks of a run whose
manifest matches and computes only the missing ones. A chunk that fails is retried (``retries`` times);
if it still fails, the other chunks are finished and written, then :class:`ChunkError` names every
failed chunk and its patients. Nothing is dropped silently.

Parquet layout (one file per chunk, "wide" per-man frames stacked): columns ``patient_index`` (int64,
position in the input list), ``patient`` (label), ``day``, then the canonical observables in DESIGN.md
units. The file's schema metadata key ``hpgsim`` holds JSON with each man's phenotype and flags, the
engine and the model digest, so that results read back are the same :class:`SimulationResult` objects.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpgsim.errors import HpgsimError, SimulationError
from hpgsim.population.phenotypes import Patient
from hpgsim.protocol.schema import Protocol
from hpgsim.simulation import (
    EngineName,
    SimulationResult,
    as_protocol,
    drop_worker_pools,
    model_for,
    simulate,
    simulate_population,
    worker_pool,
)

MANIFEST = "manifest.json"
FORMAT = "hpgsim-population-chunks/1"
#: settings that must match for `resume=True` to reuse finished chunks
_IDENTITY_KEYS = (
    "protocol_digest",
    "model_digest",
    "patients_hash",
    "n_patients",
    "chunk_size",
    "engine",
    "output_step_h",
    "rtol",
)


class SchedulerError(HpgsimError):
    """A scheduler string is malformed, or the Dask cluster it names cannot be reached."""


class ResumeError(HpgsimError):
    """``resume=True`` found an output folder written by a different run (or a damaged manifest)."""


class ChunkError(SimulationError):
    """One or more chunks failed after their retries; the message names each chunk and its patients."""


@dataclass(frozen=True)
class Scheduler:
    """A parsed scheduler string: kind "local", "processes" (a Dask LocalCluster) or "tcp" (a Dask cluster)."""

    kind: str
    workers: int = 1
    address: str = ""


def parse_scheduler(text: str) -> Scheduler:
    """Parse ``local``, ``processes:N`` or ``tcp://host:port``.

    Raises:
        SchedulerError: anything else (the message lists the accepted forms).
    """
    s = str(text).strip()
    if s == "local":
        return Scheduler("local")
    m = re.fullmatch(r"processes:(\d+)", s)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise SchedulerError(f"scheduler {text!r}: the number of worker processes must be at least 1 (e.g. 'processes:2').")
        return Scheduler("processes", workers=n)
    m = re.fullmatch(r"tcp://([A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})", s)
    if m and 0 < int(m.group(2)) < 65536:
        return Scheduler("tcp", address=s)
    raise SchedulerError(
        f"scheduler {text!r} is not understood; use 'local' (this process), 'processes:N' (a local Dask cluster "
        "of N worker processes, e.g. 'processes:2') or 'tcp://host:port' (the address of a running Dask scheduler)."
    )


# --- identity of a run (manifest) ---------------------------------------------------------------


def protocol_digest(protocol: Protocol) -> str:
    """A short hash of a validated protocol (name, duration, every regimen's doses and times)."""
    payload = json.dumps(dataclasses.asdict(protocol), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def patients_hash(patients: Sequence[Patient]) -> str:
    """A hash of the patient list: names, phenotypes and parameter values, in order (floats exactly)."""
    h = hashlib.sha256()
    for m in patients:
        h.update(json.dumps([m.name, m.phenotype, sorted(m.parameters.items())]).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def chunk_file(index: int) -> str:
    return f"chunk-{index:05d}.parquet"


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _auto_chunk_size(n: int, workers: int, engine: str) -> int:
    """About four chunks per worker (load balance), at most 64 men per chunk (256 for JAX batches)."""
    cap = 256 if engine == "jax" else 64
    return max(1, min(cap, math.ceil(n / max(1, workers * 4))))


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def _check_manifest(path: Path, want: dict[str, Any]) -> None:
    try:
        have = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResumeError(f"{path}: cannot read the manifest ({exc}); remove the folder or choose a new output folder.") from exc
    if not isinstance(have, dict) or have.get("format") != FORMAT:
        raise ResumeError(f"{path}: not an hpgsim population manifest (format {FORMAT}); choose a new output folder.")
    diff = [k for k in _IDENTITY_KEYS if have.get(k) != want[k]]
    if diff:
        detail = "; ".join(f"{k}: folder has {have.get(k)!r}, this run has {want[k]!r}" for k in diff)
        raise ResumeError(
            f"{path.parent}: cannot resume: the finished chunks there come from a different run ({detail}). "
            "Resume with the same protocol, patients and settings, or write to a new output folder."
        )


# --- chunk files --------------------------------------------------------------------------------


def write_chunk(path: Path, first: int, results: Sequence[SimulationResult], patients: Sequence[Patient]) -> None:
    """Write one chunk's per-man frames to ``path`` atomically (temporary file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frames = []
    for k, r in enumerate(results):
        df = r.observables.reset_index()
        df.insert(0, "patient", r.patient)
        df.insert(0, "patient_index", np.full(len(df), first + k, dtype=np.int64))
        frames.append(df)
    table = pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False)
    meta = {
        "engine": results[0].engine,
        "model_digest": results[0].model_digest,
        "men": [{"phenotype": m.phenotype, "flags": list(r.flags)} for m, r in zip(patients, results, strict=True)],
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"hpgsim": json.dumps(meta).encode()})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_chunk(path: Path, protocol: Protocol) -> list[SimulationResult]:
    """Read one chunk file back into SimulationResults (float64 values round-trip exactly)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"hpgsim"])
    df = table.to_pandas()
    out = []
    for k, (_, g) in enumerate(df.groupby("patient_index", sort=True)):
        name = str(g["patient"].iloc[0])
        obs = g.drop(columns=["patient_index", "patient"]).set_index("day")
        out.append(SimulationResult(name, protocol, obs, tuple(meta["men"][k]["flags"]), meta["model_digest"], meta["engine"]))
    return out


def read_results(out_dir: str | Path, protocol: Any) -> list[SimulationResult]:
    """All results of a finished (or partly finished) run folder, in patient order."""
    prot = as_protocol(protocol)
    d = Path(out_dir)
    return [r for f in sorted(d.glob("chunk-*.parquet")) for r in read_chunk(f, prot)]


def read_frame(out_dir: str | Path) -> pd.DataFrame:
    """All finished chunks of a run folder as one tidy wide frame (patient_index, patient, day, quantities)."""
    import pyarrow.parquet as pq

    files = sorted(Path(out_dir).glob("chunk-*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


# --- work on a worker ---------------------------------------------------------------------------


def solve_chunk(
    protocol: Protocol, patients: Sequence[Patient], engine: EngineName, output_step_h: float, rtol: float
) -> list[SimulationResult]:
    """Solve one chunk where it runs: a loop of the CPU engine, or one vmap-ed JAX batch."""
    if engine == "jax":
        return simulate_population(protocol, patients, engine="jax", output_step_h=output_step_h, rtol=rtol)
    return [simulate(protocol, m, engine=engine, output_step_h=output_step_h, rtol=rtol) for m in patients]


def _solve_chunk_by_name(
    protocol: Protocol, patients: Sequence[Patient], engine: EngineName, output_step_h: float, rtol: float
) -> list[SimulationResult]:
    # looked up at call time, so that tests can replace `solve_chunk` for the in-process scheduler
    return solve_chunk(protocol, patients, engine, output_step_h, rtol)


# --- executors: yield (chunk index, results or exception) as chunks finish ------------------------

_Job = tuple[int, list[Patient]]
_Done = tuple[int, list[SimulationResult] | BaseException]


def _run_inline(jobs: list[_Job], args: tuple[Any, ...], retries: int) -> Iterator[_Done]:
    for ci, men in jobs:
        for attempt in range(retries + 1):
            try:
                res = solve_chunk(args[0], men, *args[1:])
            except Exception as exc:
                if attempt == retries:
                    yield ci, exc
            else:
                yield ci, res
                break


def _run_pool(jobs: list[_Job], args: tuple[Any, ...], retries: int, workers: int) -> Iterator[_Done]:
    # the process-wide pool of hpgsim.simulation (fork server, kept between runs)
    pool = worker_pool(workers)
    pending: dict[Future[list[SimulationResult]], tuple[int, list[Patient], int]] = {}
    try:
        for ci, men in jobs:
            pending[pool.submit(_solve_chunk_by_name, args[0], men, *args[1:])] = (ci, men, 0)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                ci, men, attempt = pending.pop(fut)
                exc = fut.exception()
                if exc is None:
                    yield ci, fut.result()
                elif attempt < retries:
                    pending[pool.submit(_solve_chunk_by_name, args[0], men, *args[1:])] = (ci, men, attempt + 1)
                else:
                    yield ci, exc
    except BrokenProcessPool:
        drop_worker_pools()  # a worker died: the next run starts a fresh pool
        raise
    finally:
        for fut in pending:  # an abandoned run (error or generator closed) leaves no work queued
            fut.cancel()


def _dask_client(sched: Scheduler) -> tuple[Any, Any]:
    """(client, cluster or None): a new LocalCluster for processes:N, a connection for tcp://."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency
        raise SchedulerError(
            f"scheduler '{sched.kind}' needs dask.distributed: pip install 'dask[distributed]' ({exc})."
        ) from exc
    if sched.kind == "processes":
        cluster = LocalCluster(
            n_workers=sched.workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        )
        return Client(cluster), cluster
    try:
        return Client(sched.address, timeout="20s"), None
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(
            f"scheduler {sched.address}: cannot connect to a Dask scheduler there ({exc}). Start one "
            "(`dask scheduler` and `dask worker ADDRESS` on each machine) or check the address."
        ) from exc


def _run_dask(client: Any, jobs: list[_Job], args: tuple[Any, ...], retries: int, token: str) -> Iterator[_Done]:
    from distributed import as_completed

    prot_future = client.scatter(args[0], broadcast=True)
    futures = {}
    for ci, men in jobs:
        fut = client.submit(solve_chunk, prot_future, men, *args[1:], retries=retries, pure=False, key=f"hpgsim-{token}-{ci:05d}")
        futures[fut] = ci
    for fut in as_completed(list(futures)):
        ci = futures[fut]
        try:
            yield ci, fut.result()
        except Exception as exc:
            yield ci, exc
        fut.release()


# --- the entry point ----------------------------------------------------------------------------


def run_population(
    protocol: Any,
    patients: Sequence[Patient],
    scheduler: str = "local",
    chunk_size: int | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    engine: EngineName = "roadrunner",
    output_step_h: float = 24.0,
    rtol: float = 1e-6,
    processes: int = 1,
    retries: int = 2,
    progress: Callable[[int, int], None] | None = None,
    return_results: bool = True,
) -> list[SimulationResult]:
    """Simulate many men under one protocol, in chunks, on the chosen scheduler.

    Args:
        protocol: a Protocol, a protocol file path or a mapping in the protocol-file format.
        patients: the men (labels should be unique; results keep this order).
        scheduler: "local" (default, no Dask), "processes:N" or "tcp://host:port" (see module doc).
        chunk_size: men per chunk (default: about four chunks per worker, at most 64; 256 for JAX).
        out_dir: stream each finished chunk to ``out_dir/chunk-NNNNN.parquet`` plus ``manifest.json``.
        resume: reuse the finished chunks in ``out_dir`` (its manifest must match this run).
        engine: "roadrunner" (CPU) or "jax" (each chunk one vmap-ed batch).
        output_step_h: spacing of output rows in hours.
        rtol: solver relative tolerance.
        processes: worker processes for the "local" scheduler (1 = in this process).
        retries: extra attempts for a failed chunk before it is reported.
        progress: called as ``progress(men_done, men_total)`` after each chunk.
        return_results: False returns an empty list (results only on disk; for runs too big for memory).

    Returns:
        One SimulationResult per man, in the order of `patients` (identical to the local run).

    Raises:
        SchedulerError: bad scheduler string or unreachable cluster.
        ResumeError: `out_dir` holds another run (or a manifest without `resume=True`).
        ChunkError: chunks failed after their retries (finished chunks are written first).
    """
    sched = parse_scheduler(scheduler)
    prot = as_protocol(protocol)
    men = list(patients)
    n = len(men)
    if engine not in ("roadrunner", "jax"):
        raise HpgsimError(f"unknown engine {engine!r}; use 'roadrunner' (CPU, default) or 'jax'.")
    if chunk_size is not None and chunk_size < 1:
        raise HpgsimError(f"chunk_size {chunk_size}: must be at least 1.")
    if retries < 0:
        raise HpgsimError(f"retries {retries}: must be 0 or more.")
    if n == 0:
        return []
    workers = sched.workers if sched.kind == "processes" else (max(1, processes) if sched.kind == "local" else 8)
    size = chunk_size or _auto_chunk_size(n, workers, engine)
    spans = _chunks(n, size)
    args = (prot, engine, float(output_step_h), float(rtol))

    out_path = Path(out_dir) if out_dir is not None else None
    done: dict[int, list[SimulationResult]] = {}
    if out_path is not None:
        identity = {
            "protocol_digest": protocol_digest(prot),
            "model_digest": model_for(prot).digest(),
            "patients_hash": patients_hash(men),
            "n_patients": n,
            "chunk_size": size,
            "engine": engine,
            "output_step_h": float(output_step_h),
            "rtol": float(rtol),
        }
        manifest = out_path / MANIFEST
        if out_path.exists() and not out_path.is_dir():
            raise HpgsimError(f"output folder {out_path}: exists and is not a folder; choose a folder path.")
        out_path.mkdir(parents=True, exist_ok=True)
        if manifest.exists():
            if not resume:
                raise ResumeError(
                    f"{out_path}: already holds a population run ({MANIFEST}); pass resume=True (--resume) to finish it, "
                    "or choose a new output folder."
                )
            _check_manifest(manifest, identity)
        _write_json_atomic(
            manifest,
            {
                "format": FORMAT,
                **identity,
                "protocol_name": prot.name,
                "chunks": [
                    {"file": chunk_file(i), "first": a, "count": b - a, "patients": [m.name for m in men[a:b]]}
                    for i, (a, b) in enumerate(spans)
                ],
                "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        for i, (a, b) in enumerate(spans):
            f = out_path / chunk_file(i)
            if resume and f.is_file():
                try:
                    got = read_chunk(f, prot)
                except Exception:  # a damaged chunk file: compute it again
                    continue
                if [r.patient for r in got] == [m.name for m in men[a:b]]:
                    done[i] = got if return_results else []
    jobs = [(i, men[a:b]) for i, (a, b) in enumerate(spans) if i not in done]

    finished = sum(spans[i][1] - spans[i][0] for i in done)
    if progress and finished:
        progress(finished, n)
    failed: list[tuple[int, BaseException]] = []
    client = cluster = None
    try:
        if not jobs:
            stream: Iterator[_Done] = iter(())
        elif sched.kind == "local" and (processes <= 1 or len(jobs) == 1):
            stream = _run_inline(jobs, args, retries)
        elif sched.kind == "local":
            stream = _run_pool(jobs, args, retries, min(processes, len(jobs), os.cpu_count() or 1))
        else:
            client, cluster = _dask_client(sched)
            token = hashlib.sha256(f"{time.time_ns()}-{os.getpid()}".encode()).hexdigest()[:10]
            stream = _run_dask(client, jobs, args, retries, token)
        for ci, res in stream:
            a, b = spans[ci]
            if isinstance(res, BaseException):
                failed.append((ci, res))
                continue
            if out_path is not None:
                write_chunk(out_path / chunk_file(ci), a, res, men[a:b])
            done[ci] = res if return_results else []
            finished += b - a
            if progress:
                progress(finished, n)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    if failed:
        lines = []
        for ci, exc in sorted(failed, key=lambda x: x[0]):
            a, b = spans[ci]
            names = ", ".join(m.name for m in men[a:b])
            lines.append(f"chunk {ci} (patients {a}-{b - 1}: {names}): {type(exc).__name__}: {exc}")
        where = (
            f" The finished chunks are in {out_path}; rerun with resume=True (--resume) to retry only these." if out_path else ""
        )
        raise ChunkError(
            f"{len(failed)} of {len(spans)} chunks failed after {retries} retries: " + "; ".join(lines) + "." + where
        )
    if not return_results:
        return []
    return [r for i in range(len(spans)) for r in done[i]]
