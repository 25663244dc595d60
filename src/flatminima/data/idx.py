"""The IDX format of MNIST and Fashion-MNIST, read from bytes with every header field checked.

IDX ("THE IDX FILE FORMAT", http://yann.lecun.com/exdb/mnist/): magic ``00 00 <type> <ndim>``, then ``ndim``
big-endian int32 sizes, then the values, big-endian, row-major. Type codes 0x08 ubyte, 0x09 byte, 0x0B short,
0x0C int, 0x0D float, 0x0E double.

Pixel values (decision; the format allows any type): ubyte images are the official format and are divided by
255; other integer images must lie in 0..255 and are read as ubyte; float images must be finite and already in
[0, 1] and are used unscaled. Anything else is refused, never silently rescaled.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import ConfigError

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAX_NDIM = 4  # images are 3-d, labels 1-d; more is not an MNIST-style file


def parse_idx(raw: bytes, path: Path) -> np.ndarray:
    """The array held by IDX content ``raw`` (read from ``path``, named in every error)."""
    if len(raw) < 4:
        raise ConfigError(f"IDX file {path} is truncated inside its header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ConfigError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    if not 1 <= ndim <= MAX_NDIM:
        raise ConfigError(f"IDX file {path} declares {ndim} dimensions; expected 1 to {MAX_NDIM}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ConfigError(
            f"IDX file {path} is truncated inside its header: {ndim} dimensions need {header} bytes, "
            f"the file has {len(raw)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if any(s < 0 for s in shape):
        raise ConfigError(f"IDX file {path} is corrupt: negative dimension in shape {shape}")
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow on absurd sizes
    if len(raw) - header != expected:
        raise ConfigError(
            f"IDX file {path} is truncated or corrupt: header says shape {shape} ({expected} bytes of "
            f"data), the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def image_values(x: np.ndarray, path: Path) -> tuple[np.ndarray, float | None]:
    """Images as uint8 (divide by 255) or as float32 already in [0, 1] (no scale); see the module doc."""
    if x.dtype == np.uint8:
        return x, 255.0
    if np.issubdtype(x.dtype, np.integer):
        if x.size and not 0 <= x.min() <= x.max() <= 255:
            raise ConfigError(f"{path}: integer pixel values must be 0..255, found {x.min()}..{x.max()}")
        return x.astype(np.uint8), 255.0
    if x.size and not np.isfinite(x).all():
        raise ConfigError(f"{path}: {int((~np.isfinite(x)).sum())} pixel values are NaN or infinite")
    if x.size and not 0.0 <= x.min() <= x.max() <= 1.0:
        raise ConfigError(
            f"{path}: float pixel values must be in [0, 1] (never rescaled), found {x.min()}..{x.max()}"
        )
    return x.astype(np.float32), None


def label_values(y: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
    """Integer labels in ``0..num_classes-1`` as int64."""
    if not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"{path}: labels must be integers, the file holds {y.dtype} values")
    if y.size and not 0 <= y.min() <= y.max() < num_classes:
        raise ConfigError(f"{path}: labels must be 0..{num_classes - 1}, found {y.min()}..{y.max()}")
    return y.astype(np.int64)
