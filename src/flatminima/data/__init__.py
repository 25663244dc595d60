"""Data sets: ``fm.data.load(name, ...) -> Dataset``; embedded (digits, mnist1d, teacher) and file-based
(mnist, fashion-mnist, cifar10, verified by the published checksums of the official files) sources with
seeded subset / corruption transforms. ``python -m flatminima.data`` says which file-based sets are found."""

from .checksums import DataIdentityError, DataVerificationError
from .cifar_pickle import UnsafePickleError
from .dataset import Dataset, Split
from .loader import available, load

__all__ = [
    "DataIdentityError",
    "DataVerificationError",
    "Dataset",
    "Split",
    "UnsafePickleError",
    "available",
    "load",
]
