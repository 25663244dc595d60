"""Loaders for data files the user already has: MNIST, Fashion-MNIST (IDX) and CIFAR-10 (python pickles).

Nothing is downloaded. The directory is ``root=`` or the ``FLATMINIMA_DATA`` environment variable, else
``./data``; within it the usual layouts are searched (``root/``, ``root/<name>/``, torchvision's
``root/MNIST/raw``, ``root/FashionMNIST/raw``, ``root/cifar-10-batches-py``, ...). Missing files raise
:class:`~flatminima.errors.DataNotFoundError` naming the files expected and every directory searched.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataNotFoundError
from .raw import RawData
from .request import SourceRequest

ENV_VAR = "FLATMINIMA_DATA"
DEFAULT_ROOT = "data"
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
SUBDIRS = {
    "mnist": ("", "mnist", "MNIST", "mnist/raw", "MNIST/raw"),
    "fashion-mnist": (
        "",
        "fashion-mnist",
        "fashion_mnist",
        "FashionMNIST",
        "fashion-mnist/raw",
        "FashionMNIST/raw",
    ),
    "cifar10": (
        "",
        "cifar-10-batches-py",
        "cifar10",
        "cifar10/cifar-10-batches-py",
        "CIFAR10",
        "CIFAR10/cifar-10-batches-py",
    ),
}
# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"); multi-byte values are big-endian.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def data_root(root: str | Path | None) -> Path:
    """``root`` if given, else ``$FLATMINIMA_DATA``, else ``./data``."""
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get(ENV_VAR) or DEFAULT_ROOT).expanduser()


def _resolve(directory: Path, filename: str, allow_gz: bool) -> Path | None:
    for candidate in (filename, f"{filename}.gz") if allow_gz else (filename,):
        if (directory / candidate).is_file():
            return directory / candidate
    return None


def find_files(name: str, root: str | Path | None, files: tuple[str, ...], allow_gz: bool) -> list[Path]:
    """Paths of ``files`` in the first searched directory that holds all of them (each maybe ``.gz``)."""
    base = data_root(root).absolute()
    searched = [base / sub if sub else base for sub in SUBDIRS[name]]
    for directory in searched:
        found = [_resolve(directory, f, allow_gz) for f in files]
        if all(p is not None for p in found):
            return [p for p in found if p is not None]
    gz = " (each optionally gzipped, .gz)" if allow_gz else ""
    raise DataNotFoundError(
        f"data set {name!r} not found: expected the files {', '.join(files)}{gz} together in one of the "
        f"directories {', '.join(str(d) for d in searched)}. Put them there, or point root= or the "
        f"{ENV_VAR} environment variable at the directory that holds them."
    )


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (plain or gzipped): magic 00 00 <type> <ndim>, ndim big-endian int32 sizes, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise ConfigError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ConfigError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(raw[4:header], dtype=">i4"))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    if len(shape) != ndim or len(raw) - header != int(np.prod(shape)) * dtype.itemsize:
        raise ConfigError(f"IDX file {path} is truncated or corrupt: header says shape {shape}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_split(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ConfigError(f"{images} and {labels} do not match: shapes {x.shape} and {y.shape}")
    return x[:, None], y.astype(np.int64)


def _idx_dataset(name: str, req: SourceRequest) -> RawData:
    paths = find_files(name, req.root, IDX_FILES, allow_gz=True)
    x, y = _idx_split(paths[0], paths[1])
    xt, yt = _idx_split(paths[2], paths[3])
    if x.shape[1:] != xt.shape[1:]:
        raise ConfigError(f"{name}: train images {x.shape[1:]} and test images {xt.shape[1:]} differ in size")
    for labels in (y, yt):
        if labels.size and not 0 <= labels.min() <= labels.max() < 10:
            raise ConfigError(f"{name}: labels must be 0..9, found {labels.min()}..{labels.max()}")
    return RawData(x, y, xt, yt, 10, tuple(int(s) for s in x.shape[1:]), scale=255.0)


def mnist(req: SourceRequest) -> RawData:
    """MNIST from its IDX files (``train-images-idx3-ubyte[.gz]``, ...): 60000/10000 images (1, 28, 28)."""
    return _idx_dataset("mnist", req)


def fashion_mnist(req: SourceRequest) -> RawData:
    """Fashion-MNIST from its IDX files (names and format as MNIST): 60000/10000 images (1, 28, 28)."""
    return _idx_dataset("fashion-mnist", req)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    # The official "CIFAR-10 python version" is a set of pickled dicts; unpickling runs code, so this reads
    # only the user's own local copy (found by find_files), never anything fetched.
    try:
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
    except Exception as exc:  # pickle raises many types on a corrupt file
        raise ConfigError(f"cannot read CIFAR-10 batch {path}: {exc}") from exc
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ConfigError(f"{path} is not a CIFAR-10 batch (keys: {sorted(batch)})")
    x = np.asarray(batch["data"], dtype=np.uint8)
    y = np.asarray(batch["labels"], dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
        raise ConfigError(f"{path}: expected data [n, 3072] and n labels, got {x.shape} and {y.shape}")
    return x.reshape(-1, 3, 32, 32), y


def cifar10(req: SourceRequest) -> RawData:
    """CIFAR-10 in the official python format (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``).

    Each batch is a pickled dict with ``data`` (uint8 [10000, 3072], rows R then G then B planes of 32x32) and
    ``labels``. Loaded with :mod:`pickle` from the user's own local directory only. 50000/10000 images
    (3, 32, 32), /255.
    """
    paths = find_files("cifar10", req.root, CIFAR_FILES, allow_gz=False)
    parts = [_cifar_batch(p) for p in paths[:-1]]
    xt, yt = _cifar_batch(paths[-1])
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return RawData(x, y, xt, yt, 10, (3, 32, 32), scale=255.0)
