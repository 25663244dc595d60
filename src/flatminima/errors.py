"""Exceptions raised by flatminima.

Every error caused by the user's input derives from :class:`FlatminimaError`; the CLI turns these into one
line on stderr and exit code 2. Anything else is a bug (exit code 1).
"""

from __future__ import annotations


class FlatminimaError(Exception):
    """Base class of all input errors (bad config, unknown name, missing file, ...)."""


class ConfigError(FlatminimaError, ValueError):
    """A configuration or argument is invalid (unknown key, negative learning rate, malformed YAML, ...)."""


class UnsupportedOperationError(ConfigError):
    """The model uses an op without the derivative a measurement needs (e.g. no double backward for HVPs)."""


class UnknownNameError(ConfigError, KeyError):
    """An unknown dataset, model, activation, optimizer, experiment or measurement name."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class DataNotFoundError(FlatminimaError, FileNotFoundError):
    """Data files are missing; the message names the exact files expected and where."""


class CheckpointError(FlatminimaError):
    """A checkpoint or run directory is missing, corrupt or does not match the model."""


def unknown(kind: str, name: str, choices: list[str] | tuple[str, ...]) -> UnknownNameError:
    """Build the standard 'unknown X' error listing the valid choices."""
    return UnknownNameError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(choices))}")


class ConvergenceWarning(RuntimeWarning):
    """An iterative measurement (Lanczos, power iteration, bisection) stopped before reaching its tolerance;
    the result is returned with ``converged=False`` and its residual. Every curvature measurement warns with
    this one class (``warnings.simplefilter("error", fm.ConvergenceWarning)`` turns them into errors)."""
