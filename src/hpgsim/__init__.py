"""hpgsim: a simulator of the male hypothalamic-pituitary-gonadal axis and the drugs that act on it.

A research and education tool, not a medical device: it predicts, it never prescribes.

The public API is listed in ``__all__``; importing hpgsim changes no global configuration.
"""

from hpgsim.errors import FitError, HpgsimError, ProtocolError, SimulationError, SpecError, UnitError
from hpgsim.fit import fit, predict
from hpgsim.model.spec import ModelSpec, load_model
from hpgsim.population.phenotypes import Patient, get_phenotype, phenotype_names, sample_patients, typical_patient
from hpgsim.protocol.schema import Protocol, load_protocol, validate_protocol
from hpgsim.sensitivity import sensitivity
from hpgsim.simulation import DISCLAIMER, SimulationResult, simulate, simulate_population
from hpgsim.trial import trial

__version__ = "0.1.0"

__all__ = [
    "DISCLAIMER",
    "FitError",
    "HpgsimError",
    "ModelSpec",
    "Patient",
    "Protocol",
    "ProtocolError",
    "SimulationError",
    "SimulationResult",
    "SpecError",
    "UnitError",
    "__version__",
    "fit",
    "get_phenotype",
    "load_model",
    "load_protocol",
    "phenotype_names",
    "predict",
    "sample_patients",
    "sensitivity",
    "simulate",
    "simulate_population",
    "trial",
    "typical_patient",
    "validate_protocol",
]
