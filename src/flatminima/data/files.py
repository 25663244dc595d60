"""Loaders for data files on disk (the user's, or ``make data``'s): MNIST, Fashion-MNIST (IDX), CIFAR-10.

Nothing is downloaded. Where the files are looked for: :mod:`.locate`. Every file is read whole, its MD5
taken on the decompressed content and compared with the published checksum of the official file
(:mod:`.checksums`): MNIST files found where Fashion-MNIST was asked for (or vice versa) are refused, naming
the set found; files of another version are refused unless ``verify=False``; a corrupt or truncated file is a
:class:`~flatminima.errors.ConfigError` naming it. CIFAR-10 batches are verified *before* they are unpickled,
and then unpickled through an allow-list (:mod:`.cifar_pickle`), so a crafted batch cannot run code.
The result's ``provenance`` records the directory, each file's MD5 and whether all of them verified.
"""

from __future__ import annotations

import copy
import gzip
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import ConfigError
from . import checksums
from .cifar_pickle import batch_arrays, unpickle
from .idx import image_values, label_values, parse_idx
from .locate import complete_dirs, not_found, search_dirs
from .raw import RawData
from .request import SourceRequest

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
MAX_FILE_BYTES = 1 << 29  # 512 MiB decompressed; the largest official file is 47 MB (MNIST train images)
CACHE_SIZE = 2  # decoded file sets kept in memory (Fashion-MNIST ~55 MB, CIFAR-10 ~184 MB of uint8)
Decoded = TypeVar("Decoded")
_cache: OrderedDict[Hashable, tuple[Any, dict[str, Any]]] = OrderedDict()


def read_content(path: Path) -> bytes:
    """The bytes of ``path``, gunzipped when it ends in ``.gz``; a clear error if unreadable or huge."""
    try:
        if path.suffix != ".gz":
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ConfigError(f"{path} is {path.stat().st_size} bytes, more than any official data file")
            return path.read_bytes()
        with gzip.open(path, "rb") as fh:
            content = fh.read(MAX_FILE_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError(f"cannot read data file {path}: {exc}") from exc
    if len(content) > MAX_FILE_BYTES:
        raise ConfigError(f"{path} decompresses to over {MAX_FILE_BYTES} bytes: not an official data file")
    return content


def _verified(
    name: str,
    req: SourceRequest,
    files: tuple[str, ...],
    allow_gz: bool,
    decode: Callable[[list[bytes], list[Path]], Decoded],
    explain_mismatch: bool,
) -> tuple[Decoded, dict[str, Any]]:
    """Decode the files of ``name`` from the first searched directory holding all of them, once verified.

    Directories whose files are another data set's official files are skipped; that error is raised when
    nothing else is found. ``explain_mismatch``: on a checksum mismatch (no file an official one), decode
    anyway so that a structurally corrupt file is reported as such (safe for IDX; never for pickles, which
    are decoded only once verified or with ``verify=False``).

    Verified and decoded sets are cached in memory (the last :data:`CACHE_SIZE`), keyed by the data set, the
    ``verify`` flag and each file's path, size, inode and modification time, so a changed file is read again;
    cached arrays are read-only (every transform copies).
    """
    searched = search_dirs(name, req.root)
    mixup: checksums.DataIdentityError | None = None
    for directory, paths in complete_dirs(searched, files, allow_gz):
        key = (name, req.verify, *_file_keys(paths))
        if key in _cache:
            _cache.move_to_end(key)
            decoded, provenance = _cache[key]
            return decoded, copy.deepcopy(provenance)
        contents = [read_content(p) for p in paths]
        digests = {f: checksums.md5(c) for f, c in zip(files, contents, strict=True)}
        try:
            verified = checksums.check(name, directory, digests, req.verify)
        except checksums.DataIdentityError as exc:
            mixup = mixup or exc
            continue
        except checksums.DataVerificationError:
            if explain_mismatch and not checksums.any_official(digests):
                decode(contents, paths)  # raises the more precise "truncated or corrupt" error, if any
            raise
        provenance = {
            "name": name,
            "source": "files",
            "directory": str(directory),
            "files": {p.name: digests[f] for f, p in zip(files, paths, strict=True)},
            "checksum": "md5 of the decompressed content",
            "verified": verified,
            "verify": req.verify,
        }
        decoded = decode(contents, paths)
        _freeze(decoded)
        _cache[key] = decoded, provenance
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return decoded, copy.deepcopy(provenance)
    if mixup is not None:
        raise mixup
    raise not_found(name, files, searched, allow_gz)


def _file_keys(paths: list[Path]) -> list[tuple[str, int, int, int]]:
    try:
        stats = [p.stat() for p in paths]
    except OSError as exc:
        raise ConfigError(f"cannot read data file {exc.filename}: {exc.strerror}") from exc
    return [(str(p.resolve()), s.st_size, s.st_ino, s.st_mtime_ns) for p, s in zip(paths, stats, strict=True)]


def _freeze(decoded: object) -> None:
    """Make every array in ``decoded`` (nested tuples / lists) read-only: cached arrays are shared."""
    if isinstance(decoded, np.ndarray):
        decoded.setflags(write=False)
    elif isinstance(decoded, (tuple, list)):
        for item in decoded:
            _freeze(item)


def _decode_idx(contents: list[bytes], paths: list[Path]) -> tuple[Any, ...]:
    """Images and labels of the four IDX files, checked (shapes, pixel types and ranges, labels 0..9)."""
    x, y, xt, yt = (parse_idx(c, p) for c, p in zip(contents, paths, strict=True))
    for images, labels, pi, pl in ((x, y, paths[0], paths[1]), (xt, yt, paths[2], paths[3])):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ConfigError(
                f"{pi} and {pl} do not match: expected images [n, rows, cols] and n labels, got shapes "
                f"{images.shape} and {labels.shape}"
            )
    if x.shape[1:] != xt.shape[1:]:
        raise ConfigError(f"train images {x.shape[1:]} ({paths[0]}) and test images {xt.shape[1:]} differ")
    (x, scale), (xt, scale_t) = image_values(x, paths[0]), image_values(xt, paths[2])
    if scale != scale_t:
        raise ConfigError(f"{paths[0]} and {paths[2]} hold different pixel types ({x.dtype} and {xt.dtype})")
    return x, label_values(y, paths[1], 10), xt, label_values(yt, paths[3], 10), scale


def _idx_dataset(name: str, req: SourceRequest) -> RawData:
    decoded, provenance = _verified(name, req, IDX_FILES, True, _decode_idx, explain_mismatch=True)
    x, y, xt, yt, scale = decoded
    shape = (1, *(int(s) for s in x.shape[1:]))
    return RawData(x[:, None], y, xt[:, None], yt, 10, shape, scale=scale, provenance=provenance)


def mnist(req: SourceRequest) -> RawData:
    """MNIST from its IDX files (``train-images-idx3-ubyte[.gz]``, ...): 60000/10000 images (1, 28, 28)."""
    return _idx_dataset("mnist", req)


def fashion_mnist(req: SourceRequest) -> RawData:
    """Fashion-MNIST from its IDX files (names and format as MNIST): 60000/10000 images (1, 28, 28)."""
    return _idx_dataset("fashion-mnist", req)


def _decode_cifar(contents: list[bytes], paths: list[Path]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [batch_arrays(unpickle(c, p), p) for c, p in zip(contents, paths, strict=True)]


def cifar10(req: SourceRequest) -> RawData:
    """CIFAR-10 in the official python format (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``).

    Each batch is a pickled dict with ``data`` (uint8 [10000, 3072], rows R then G then B planes of 32x32) and
    ``labels``. Checksums are verified before unpickling; unpickling admits only numpy arrays and plain
    values (:mod:`.cifar_pickle`). 50000/10000 images (3, 32, 32), /255.
    """
    batches, provenance = _verified("cifar10", req, CIFAR_FILES, False, _decode_cifar, explain_mismatch=False)
    x = np.concatenate([b[0] for b in batches[:-1]])
    y = np.concatenate([b[1] for b in batches[:-1]])
    xt, yt = batches[-1]
    return RawData(x, y, xt, yt, 10, (3, 32, 32), scale=255.0, provenance=provenance)
