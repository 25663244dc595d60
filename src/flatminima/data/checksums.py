"""Published MD5 checksums of the official data files, and what a set of files turns out to be.

Checksums are of the *decompressed* content: Debian's ``dataset-fashion-mnist`` recompressed the ``.gz``
files, so their own MD5s differ from the official downloads while the IDX content inside is identical.

* MNIST (LeCun, Cortes & Burges, http://yann.lecun.com/exdb/mnist/) and Fashion-MNIST (Xiao, Rasul & Vollgraf
  2017, github.com/zalandoresearch/fashion-mnist): MD5 of each uncompressed IDX file of the official release
  (for Fashion-MNIST checked against ``zcat /usr/share/datasets/fashion-mnist/*.gz | md5sum``).
* CIFAR-10, python version (Krizhevsky 2009): MD5 of each file of ``cifar-10-python.tar.gz``'s
  ``cifar-10-batches-py/`` (the checksums torchvision checks).

MNIST and Fashion-MNIST share file names and format, so only the checksums tell them apart:
:func:`check` refuses MNIST files loaded as Fashion-MNIST (and vice versa) with :class:`DataIdentityError`
naming the set found, and any other mismatch with :class:`DataVerificationError` unless ``verify=False``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import ConfigError

PUBLISHED_MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    "cifar10": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
}
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


class DataVerificationError(ConfigError):
    """Data files do not match the published checksums of the official files (``verify=False`` loads them)."""


class DataIdentityError(DataVerificationError):
    """Data files are another data set's official files (Fashion-MNIST found where MNIST was asked for)."""


def md5(content: bytes) -> str:
    """Hex MD5 of ``content`` (an integrity check, not a security primitive)."""
    return hashlib.md5(content, usedforsecurity=False).hexdigest()


def _known(digest: str) -> tuple[str, str] | None:
    """``(data set, file)`` whose published checksum is ``digest``, if any."""
    for name, table in PUBLISHED_MD5.items():
        for file, expected in table.items():
            if expected == digest:
                return name, file
    return None


def any_official(digests: dict[str, str]) -> bool:
    """Whether any of ``digests`` is the published checksum of some official file."""
    return any(_known(d) is not None for d in digests.values())


def check(name: str, directory: Path, digests: dict[str, str], verify: bool) -> bool:
    """Compare ``digests`` (official file name -> MD5 of its content) with the published MD5s of ``name``.

    Returns ``True`` when every file is the official one. Files that are another set's official files raise
    :class:`DataIdentityError`, whatever ``verify`` says; a file that is the official file of the same set
    under another name (train and test swapped) raises :class:`DataVerificationError`; any other mismatch
    raises it too, unless ``verify`` is ``False`` (then ``False`` is returned and the caller records it).
    """
    table = PUBLISHED_MD5[name]
    if all(table[f] == d for f, d in digests.items()):
        return True
    known = {f: _known(d) for f, d in digests.items() if table[f] != d}
    foreign = {f: k for f, k in known.items() if k is not None and k[0] != name}
    if foreign:
        raise DataIdentityError(_identity_message(name, directory, digests, foreign))
    swapped = {f: k for f, k in known.items() if k is not None}
    if swapped:
        pairs = ", ".join(f"{f} holds the official {k[1]}" for f, k in swapped.items())
        raise DataVerificationError(
            f"{TITLES[name]} files in {directory} are misnamed: {pairs}. Restore the official file names."
        )
    if verify:
        wrong = "; ".join(f"{f}: md5 {digests[f]}, expected {table[f]}" for f in known)
        raise DataVerificationError(
            f"{TITLES[name]} files in {directory} do not match the published checksums of the official files "
            f"(MD5 of the decompressed content): {wrong}. A corrupt or partial copy, or another version of "
            f"the files: replace them with the official files, or pass verify=False (in a run config, "
            f"data: verify: false) to load them unverified; the result then records verified: false."
        )
    return False


def _identity_message(
    name: str, directory: Path, digests: dict[str, str], foreign: dict[str, tuple[str, str]]
) -> str:
    others = sorted({k[0] for k in foreign.values()})
    if len(others) == 1 and len(foreign) == len(digests):
        other = others[0]
        return (
            f"these are the {TITLES[other]} files ({', '.join(foreign)} in {directory} match the published "
            f"checksums of {TITLES[other]}), not {TITLES[name]}: load them as {other!r}, or put the "
            f"{TITLES[name]} files in another directory"
        )
    parts = ", ".join(f"{f} is {TITLES[k[0]]}'s {k[1]}" for f, k in foreign.items())
    return f"the {TITLES[name]} files in {directory} are mixed with another data set's files: {parts}"
