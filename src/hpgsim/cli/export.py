"""`hpgsim export sbml|petab`: the model and the calibration problem in their ecosystems' formats."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from hpgsim.cli import _run, app, console, err_console
from hpgsim.errors import SpecError

export_app = typer.Typer(no_args_is_help=True, help="Export the model (SBML) or the calibration problem (PEtab).")
app.add_typer(export_app, name="export")


def _write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory (never half a file)."""
    if path.exists() and path.is_dir():
        raise SpecError(f"-o {path}: is a directory. Give a file name, e.g. -o model.xml.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SpecError(f"-o {path}: the directory {parent} does not exist. Create it first.")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@export_app.command("sbml")
def sbml(
    out: Annotated[Path, typer.Option("-o", "--out", help="SBML file to write (replaced if it exists).")],
    protocol: Annotated[Path | None, typer.Option(help="Protocol YAML: its doses become SBML events.")] = None,
    phenotype: Annotated[str, typer.Option(help="Phenotype of the man whose parameters are written.")] = "healthy",
    patient: Annotated[Path | None, typer.Option(help="Patient YAML file (instead of --phenotype).")] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Write the model as portable SBML L3V2 (units, sources, steady-state initial values, dose events)."""
    _run(debug, lambda: _sbml(out, protocol, phenotype, patient))


def _sbml(out: Path, protocol_path: Path | None, phenotype: str, patient_path: Path | None) -> None:
    from hpgsim.interop.sbml import check_sbml, export_sbml
    from hpgsim.population.phenotypes import get_phenotype, load_patient
    from hpgsim.protocol.schema import load_protocol

    if patient_path is not None and phenotype != "healthy":
        raise SpecError("--patient and --phenotype cannot be combined: the patient file names his phenotype. Give one.")
    prot = load_protocol(protocol_path) if protocol_path is not None else None
    man = load_patient(patient_path) if patient_path is not None else None
    if man is None:
        get_phenotype(phenotype)
    text = export_sbml(prot, patient=man, phenotype=phenotype)
    findings = check_sbml(text)
    bad = [f for f in findings if f[0] in ("Error", "Fatal")]
    if bad:
        raise RuntimeError(f"the exported SBML fails libsbml's checks: {bad[0]}")
    _write_atomically(out, text)
    console.print(
        f"wrote {out} ({'no doses' if prot is None else prot.name}); libsbml consistency checks with units: "
        f"{len(findings)} finding(s)",
        highlight=False,
    )
    for sev, code, msg in findings:
        err_console.print(f"[yellow]{sev} {code}:[/] {escape(msg.splitlines()[0])}", highlight=False, soft_wrap=True)


@export_app.command("petab")
def petab(
    out: Annotated[Path, typer.Option("-o", "--out", help="Directory to write the PEtab problem into (replaced).")],
    studies: Annotated[
        list[Path] | None, typer.Argument(help="Study files or directories (default: the packaged study set).")
    ] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Write the calibration problem (SBML, conditions, measurements, observables, parameters) as PEtab v1."""
    _run(debug, lambda: _petab(out, studies))


def _petab(out: Path, studies: list[Path] | None) -> None:
    from hpgsim.interop.petab import write_petab

    if out.exists() and not out.is_dir():
        raise SpecError(f"-o {out}: exists and is not a directory. Choose a directory path.")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise SpecError(f"-o {out}: the directory {parent} does not exist. Create it first.")
    tmp = Path(tempfile.mkdtemp(prefix=".hpgsim-petab-", dir=parent))
    try:
        summary = write_petab(tmp, studies)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    console.print(
        f"wrote {out}/problem.yaml: {summary['conditions']} conditions, {summary['measurements']} measurements, "
        f"{summary['estimated']} estimated parameters; {summary['skipped']} observations skipped (see {out}/README.md); "
        f"petab lint: {'passed' if summary['lint_ok'] else 'FAILED'}",
        highlight=False,
    )
