"""The CPU engine: libRoadRunner (CVODE, LLVM-compiled) on the SBML generated from the ModelSpec.

Doses are applied between integration segments: the grid of dose and output times is walked in
order, each segment integrated in one ``oneStep`` call. CVODE restarts after each dose (a
discontinuity requires it) and only then: an output time with no dose continues the integration
(``oneStep(..., reset=False)``; restarting there cost 35% of a year of twice-weekly boluses).
Outputs at a dose time are recorded before the dose (trough).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import roadrunner

from hpgsim.engine.schedule import DoseSchedule, segment_grid
from hpgsim.errors import SimulationError
from hpgsim.model.spec import ModelSpec


def _cache_file(spec: ModelSpec) -> Path | None:
    """Where the compiled model is cached: keyed by the model digest, the SBML generator and RoadRunner."""
    if os.environ.get("HPGSIM_NO_CACHE"):
        return None
    base = os.environ.get("HPGSIM_CACHE_DIR")
    if base is None:
        try:
            import platformdirs

            base = platformdirs.user_cache_dir("hpgsim")
        except ImportError:
            base = os.path.join(tempfile.gettempdir(), "hpgsim-cache")
    generator = Path(__file__).with_name("sbml.py").read_bytes()
    key = hashlib.sha256(spec.digest().encode() + generator + roadrunner.__version__.encode()).hexdigest()[:20]
    return Path(base) / f"roadrunner-{key}.state"


def _load_or_compile(spec: ModelSpec) -> roadrunner.RoadRunner:
    """A RoadRunner for `spec`: from the on-disk cache if present (13 ms), else compiled (~0.3 s) and cached."""
    path = _cache_file(spec)
    if path is not None and path.is_file():
        try:
            rr = roadrunner.RoadRunner()
            rr.loadState(str(path))
            return rr
        except Exception:  # a stale or broken cache entry: fall through and rebuild it
            pass
    from hpgsim.engine.sbml import default_sbml  # libsbml is only needed to build a new model

    rr = roadrunner.RoadRunner(default_sbml(spec))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            os.close(fd)
            rr.saveState(tmp)
            os.replace(tmp, path)  # atomic: concurrent processes never see half a file
        except OSError:
            pass
    return rr


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr (CVODE's "t + h = t" floods after boluses) at the file-descriptor level."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured): nothing to silence
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


class RoadRunnerEngine:
    """One RoadRunner instance for a model; reuse it across patients (parameters are set per run).

    Args:
        spec: the model.
        rtol: CVODE relative tolerance.
        atol: CVODE absolute tolerance (states are O(1e-4) to O(1e3) in their own units).
        max_steps: CVODE step budget per segment (a failure raises SimulationError).
    """

    def __init__(self, spec: ModelSpec, rtol: float = 1e-7, atol: float = 1e-9, max_steps: int = 200000) -> None:
        self.spec = spec
        roadrunner.Logger.setLevel(roadrunner.Logger.LOG_ERROR)
        self.rr = _load_or_compile(spec)
        integ = self.rr.integrator
        integ.relative_tolerance = rtol
        integ.absolute_tolerance = atol
        integ.maximum_num_steps = max_steps
        integ.stiff = True
        self.state_names = spec.state_names
        self.param_names = spec.parameter_names
        self.rr.selections = list(self.state_names)
        self._atol: np.ndarray | None = None

    def set_tolerances(self, rtol: float, atol: float | np.ndarray) -> None:
        """Set CVODE's relative tolerance and absolute tolerance (scalar, or one per state)."""
        integ = self.rr.integrator
        if integ.relative_tolerance != rtol:
            integ.relative_tolerance = rtol
        vec = np.broadcast_to(np.asarray(atol, dtype=float), (len(self.state_names),))
        if self._atol is None or not np.array_equal(vec, self._atol):
            for name, a in zip(self.state_names, vec, strict=True):
                integ.setIndividualTolerance(name, float(a))
            self._atol = vec.copy()

    def solve(
        self,
        params: np.ndarray,
        y0: np.ndarray,
        schedule: DoseSchedule,
        output_times_h: np.ndarray,
        patient: str = "patient",
    ) -> np.ndarray:
        """Integrate one patient.

        Args:
            params: shape (n_params,), in the spec's parameter order and units.
            y0: shape (n_states,), the state at t = 0 (before any dose).
            schedule: dose events.
            output_times_h: shape (n_out,), sorted, in hours, starting at 0.
            patient: label used in error messages.

        Returns:
            States at the output times, shape (n_out, n_states), recorded before any dose at that time.

        Raises:
            SimulationError: CVODE failed; the message names the patient and the time reached.
        """
        rr = self.rr
        rr.setValues(self.param_names, [float(v) for v in params])
        rr.setValues(self.state_names, [float(v) for v in y0])
        rr.model.setTime(0.0)
        with quiet_stderr():
            return self._walk(params, y0, schedule, output_times_h, patient)

    def _walk(
        self, params: np.ndarray, y0: np.ndarray, schedule: DoseSchedule, output_times_h: np.ndarray, patient: str
    ) -> np.ndarray:
        rr = self.rr
        grid, is_output, dose_rows = segment_grid(schedule, np.asarray(output_times_h, dtype=float))
        out = np.empty((int(is_output.sum()), len(self.state_names)))
        k = 0
        d = 0
        n_doses = schedule.n
        t = float(grid[0])
        restart = True  # CVODE must restart after a dose (a discontinuity), and only then
        for i in range(grid.size):
            if i > 0:
                t_next = float(grid[i])
                try:
                    rr.oneStep(t, t_next - t, restart)
                    restart = False
                except RuntimeError as exc:
                    raise SimulationError(
                        f"{patient}: the CVODE solver failed between {t / 24:.3f} and {t_next / 24:.3f} days "
                        f"(reached day {rr.model.getTime() / 24:.3f}): {exc}. Try a different tolerance or report the protocol."
                    ) from exc
                t = t_next
            if is_output[i]:
                out[k] = rr.getSelectedValues()
                k += 1
            while d < n_doses and dose_rows[d] == i:
                name = self.state_names[schedule.state_index[d]]
                rr.setValue(name, rr.getValue(name) + float(schedule.amounts[d]))
                restart = True
                d += 1
        if not np.all(np.isfinite(out)):
            bad = int(np.argmax(~np.all(np.isfinite(out), axis=1)))
            raise SimulationError(f"{patient}: non-finite state at output {bad} (day {output_times_h[bad] / 24:.2f}).")
        return out
