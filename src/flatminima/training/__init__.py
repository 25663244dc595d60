"""Training: phases of GD / SGD / Adam / L-BFGS / ``flatminima.optim`` optimizers, run directories, probes."""

from ..config import Phase
from .checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from .loading import LoadedRun, load_run
from .probes import Probe, ProbeContext, probe
from .rundir import read_metrics, read_summary
from .trainer import TrainResult, evaluate, train

__all__ = [
    "LoadedRun",
    "Phase",
    "Probe",
    "ProbeContext",
    "TrainResult",
    "evaluate",
    "load_checkpoint",
    "load_run",
    "probe",
    "read_checkpoint",
    "read_metrics",
    "read_summary",
    "save_checkpoint",
    "train",
]
