"""CIFAR-10 python batches, unpickled without running any code the file might carry.

Unpickling can call any importable function (a ``__reduce__`` runs at load time), so a batch is never handed
to :func:`pickle.load`. :class:`_BatchUnpickler` resolves only the globals the official batches (and the same
dict re-pickled by numpy / Python 3) contain, from a fixed table, importing nothing by name:

* numpy array reconstruction: ``numpy.core.multiarray._reconstruct`` (numpy < 2 spelling, as in the official
  Python 2 files), ``numpy._core.multiarray._reconstruct`` (numpy >= 2), ``numpy.ndarray``, ``numpy.dtype``,
  and ``numpy[._]core.numeric._frombuffer`` (what numpy writes at pickle protocol 5);
* ``_codecs.encode``, only as ``encode(text, "latin1")``: how Python 3 writes ``bytes`` at protocol 2.

Any other global is refused with :class:`UnsafePickleError` before it is looked up. The official files are
moreover verified by checksum before they are unpickled at all (see :mod:`.files`).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

CIFAR_PIXELS = 3 * 32 * 32
CIFAR_CLASSES = 10


class UnsafePickleError(ConfigError):
    """A pickle asks for a global outside the CIFAR-10 allow-list; nothing from it was run."""


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` restricted to the one use a protocol-2 pickle makes of it: bytes as latin-1 text."""
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r} (only 'latin1' allowed)")
    return text.encode("latin1")


_RECONSTRUCT = np.zeros(1).__reduce_ex__(4)[0]  # numpy's own array-reconstruction function, either version
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]
ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load global {module}.{name}") from None


def unpickle(content: bytes, path: Path) -> object:
    """The object pickled in ``content`` (read from ``path``), through the allow-list unpickler."""
    try:
        return _BatchUnpickler(io.BytesIO(content), encoding="bytes").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(
            f"{path} is not a CIFAR-10 batch: {exc}; an official batch holds only numpy arrays, lists, "
            f"numbers and strings, and nothing in this file was run"
        ) from None
    except Exception as exc:  # a corrupt pickle raises many types (UnpicklingError, EOFError, ValueError)
        raise ConfigError(f"cannot read CIFAR-10 batch {path}: {type(exc).__name__}: {exc}") from None


def batch_arrays(batch: object, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``[n, 3, 32, 32]`` and labels int64 ``[n]`` of an unpickled batch, every field checked.

    A batch is a dict with ``data`` (uint8 ``[n, 3072]``: the red 32x32 plane row-major, then green, then
    blue) and ``labels`` (n ints in 0..9); keys are bytes in the official files, str in re-pickled ones.
    """
    if not isinstance(batch, dict):
        raise ConfigError(f"{path} is not a CIFAR-10 batch: it holds a {type(batch).__name__}, not a dict")
    fields = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in fields or "labels" not in fields:
        raise ConfigError(f"{path} is not a CIFAR-10 batch (keys: {sorted(map(str, fields))})")
    x, labels = fields["data"], fields["labels"]
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.integer):
        kind = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise ConfigError(f"{path}: 'data' must be an integer numpy array (uint8), got {kind}")
    if x.ndim != 2 or x.shape[1] != CIFAR_PIXELS:
        raise ConfigError(f"{path}: expected 'data' of shape [n, {CIFAR_PIXELS}], got {x.shape}")
    if x.size and not 0 <= x.min() <= x.max() <= 255:
        raise ConfigError(f"{path}: pixel values must be 0..255, found {x.min()}..{x.max()}")
    y = _labels(labels, path)
    if len(y) != len(x):
        raise ConfigError(f"{path}: {len(x)} images but {len(y)} labels")
    return x.astype(np.uint8).reshape(-1, 3, 32, 32), y


def _labels(labels: object, path: Path) -> np.ndarray:
    values = labels.tolist() if isinstance(labels, np.ndarray) else labels
    if not isinstance(values, list) or not all(type(v) is int for v in values):
        raise ConfigError(f"{path}: 'labels' must be a list of integers")
    if values and not 0 <= min(values) <= max(values) < CIFAR_CLASSES:
        found = f"{min(values)}..{max(values)}"
        raise ConfigError(f"{path}: labels must be 0..{CIFAR_CLASSES - 1}, found {found}")
    return np.asarray(values, dtype=np.int64)
