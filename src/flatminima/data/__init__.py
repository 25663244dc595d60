"""Data sets: ``fm.data.load(name, ...) -> Dataset``; embedded (digits, mnist1d, teacher) and file-based
(mnist, fashion-mnist, cifar10) sources with seeded subset / corruption transforms."""

from .dataset import Dataset, Split
from .loader import available, load

__all__ = ["Dataset", "Split", "available", "load"]
