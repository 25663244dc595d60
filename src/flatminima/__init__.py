"""flatminima: measure, explain and reproduce which minima SGD finds."""

from .errors import CheckpointError, ConfigError, DataNotFoundError, FlatminimaError, UnknownNameError
from .estimate import Estimate
from .objective import Objective

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataNotFoundError",
    "Estimate",
    "FlatminimaError",
    "Objective",
    "UnknownNameError",
]
