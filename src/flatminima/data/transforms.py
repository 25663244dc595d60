"""Seeded data transforms, applied by :func:`flatminima.data.load` in this order.

1. :func:`select_classes` - keep some classes, relabel them 0..k-1 (train and test).
2. :func:`take_first` - the FIRST n training examples after class filtering (Wu, Ma & E 2018, Sec. 5:
   "the first 1000 images"); the rest is the pool for step 4. ``n_test`` cuts the test split the same way.
3. :func:`randomize_labels` - replace a fraction of the training labels by uniform random labels (Zhang et al.
   2017 "partially corrupted labels"; Theory II Table 1 / Theory III Fig. 2 "random labels").
4. :func:`draw_extra` - append m more training examples from the pool with uniform random labels (Wu, Ma & E
   2018, Table 3: "corrupted FashionMNIST", 1000 clean + 200 random-label examples).
5. :func:`encode_targets` and :func:`to_float` - one-hot / index targets, pixels scaled to [0, 1].

The test split is never corrupted. Each random step draws from its own stream ``default_rng([seed, k])``, so
that, for example, adding ``extra_random`` does not change which labels ``random_labels`` replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import torch

from ..errors import ConfigError, unknown

TARGETS = ("onehot", "index")
RANDOM_LABELS_STREAM = 1
EXTRA_RANDOM_STREAM = 2


def stream(seed: int, k: int) -> np.random.Generator:
    """Independent NumPy generator number ``k`` derived from ``seed``."""
    return np.random.default_rng([int(seed), k])


def check_count(n: object, what: str, available: int) -> int:
    """Validate a subset size: an integer in [1, available]."""
    if isinstance(n, bool) or not isinstance(n, Integral):
        raise ConfigError(f"{what} must be an integer, got {n!r}")
    if not 1 <= int(n) <= available:
        raise ConfigError(f"{what}={n} is out of range: between 1 and {available} examples are available")
    return int(n)


def check_int(value: object, what: str, minimum: int = 0) -> int:
    """Validate an integer option (seed, extra_random, ...) that must be >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_fraction(fraction: object, what: str = "random_labels") -> float:
    """Validate a fraction in [0, 1]."""
    if isinstance(fraction, bool) or not isinstance(fraction, Real) or not 0.0 <= float(fraction) <= 1.0:
        raise ConfigError(f"{what} must be a fraction in [0, 1], got {fraction!r}")
    return float(fraction)


def check_targets(targets: str) -> str:
    if targets not in TARGETS:
        raise unknown("targets", str(targets), TARGETS)
    return targets


def select_classes(
    labels_train: np.ndarray, labels_test: np.ndarray, classes: Sequence[int], num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train / test examples whose label is in ``classes``, and their new labels.

    ``classes[j]`` becomes label ``j`` (so ``classes=[1, 0]`` swaps the two). Returns
    ``(index_train, new_labels_train, index_test, new_labels_test)``; indices keep the original order.
    """
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence) or len(classes) == 0:
        raise ConfigError(f"classes must be a non-empty list of class indices, got {classes!r}")
    if any(isinstance(c, bool) or not isinstance(c, Integral) for c in classes):
        raise ConfigError(f"classes must be integers, got {list(classes)!r}")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"classes has duplicates: {list(classes)!r}")
    bad = [int(c) for c in classes if not 0 <= int(c) < num_classes]
    if bad:
        raise ConfigError(f"classes {bad} out of range: this data set has classes 0..{num_classes - 1}")
    lookup = np.full(num_classes, -1, dtype=np.int64)
    lookup[np.asarray(classes, dtype=np.int64)] = np.arange(len(classes))
    out = []
    for labels in (labels_train, labels_test):
        index = np.flatnonzero(lookup[labels] >= 0)
        out += [index, lookup[labels[index]]]
    return out[0], out[1], out[2], out[3]


def take_first(n_available: int, n: int | None, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first ``n`` examples (all when ``n`` is None) and of the remaining pool."""
    n = n_available if n is None else check_count(n, what, n_available)
    return np.arange(n), np.arange(n, n_available)


def randomize_labels(
    labels: np.ndarray, fraction: float, num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Copy of ``labels`` with ``round(fraction * n)`` of them, chosen without replacement, redrawn uniformly.

    As in Zhang et al. (2017), a redrawn label equals the old one with probability 1/K, so the expected
    fraction of labels that actually change is ``fraction * (1 - 1/K)``.
    """
    out = labels.copy()
    m = round(fraction * len(labels))
    if m:
        index = rng.choice(len(labels), size=m, replace=False)
        out[index] = rng.integers(0, num_classes, size=m)
    return out


def draw_extra(
    pool_size: int, m: int, num_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``m`` distinct pool indices (sorted) and ``m`` uniform random labels for the appended examples.

    Raises ConfigError when fewer than ``m`` examples remain in the pool.
    """
    m = check_int(m, "extra_random")
    if m > pool_size:
        raise ConfigError(
            f"extra_random={m} needs {m} training examples beyond the first n_train, only {pool_size} remain"
        )
    index = np.sort(rng.choice(pool_size, size=m, replace=False))
    return index, rng.integers(0, num_classes, size=m)


def encode_targets(labels: np.ndarray, num_classes: int, targets: str) -> torch.Tensor:
    """``"onehot"``: float32 ``[n, K]`` one-hot rows (MSE, Wu, Ma & E); ``"index"``: int64 ``[n]``."""
    index = torch.as_tensor(labels, dtype=torch.int64)
    if check_targets(targets) == "index":
        return index
    return torch.nn.functional.one_hot(index, num_classes).to(torch.float32)


def to_float(x: np.ndarray, scale: float | None) -> torch.Tensor:
    """float32 tensor of ``x / scale`` (pixels to [0, 1]); ``scale=None`` keeps the values."""
    out = torch.as_tensor(np.ascontiguousarray(x)).to(torch.float32)
    return out / scale if scale is not None else out
