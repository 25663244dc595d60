"""``load(name, ...)``: one entry point for every data set, applying the transforms of :mod:`.transforms`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._kwargs import check_kwargs
from ..errors import ConfigError, unknown
from . import embedded, files
from . import transforms as T
from .dataset import Dataset, Split
from .raw import RawData
from .request import SourceRequest

SOURCES: dict[str, Callable[..., RawData]] = {
    "digits": embedded.digits,
    "mnist1d": embedded.mnist1d,
    "teacher": embedded.teacher,
    "mnist": files.mnist,
    "fashion-mnist": files.fashion_mnist,
    "cifar10": files.cifar10,
}


def available() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(SOURCES)


def load(
    name: str,
    n_train: int | None = None,
    classes: Sequence[int] | None = None,
    random_labels: float = 0.0,
    extra_random: int = 0,
    targets: str = "onehot",
    seed: int = 0,
    root: str | Path | None = None,
    n_test: int | None = None,
    verify: bool = True,
    **kwargs: Any,
) -> Dataset:
    """Load data set ``name`` and apply, in order: class subset, first ``n_train``, random labels, extra
    random-label examples, target encoding, pixel scaling to [0, 1] (see :mod:`flatminima.data.transforms`).

    ``classes``: keep these classes, relabelled 0..k-1 in the given order. ``n_train`` / ``n_test``: the FIRST
    n examples after class filtering (all by default; for ``teacher`` the number generated, default 1000).
    ``random_labels``: fraction of the training labels redrawn uniformly. ``extra_random``: number of further
    training examples, taken (seeded, without replacement) from the training examples after the first
    ``n_train``, appended with uniform random labels. ``targets``: ``"onehot"`` (float32 [n, K]) or
    ``"index"`` (int64 [n]). ``seed`` drives the corruption only; the test split is never corrupted.
    ``root``: directory of the file-based sets (else ``$FLATMINIMA_DATA``, then ``./data``, then
    ``/usr/share/datasets/<name>``; see :mod:`flatminima.data.locate`). ``verify``: refuse files that do not
    match the published checksums of the official files (:mod:`flatminima.data.checksums`); ``False`` loads
    them and ``provenance["verified"]`` says so. Another data set's official files (MNIST where Fashion-MNIST
    was asked for) are refused either way. ``kwargs``:
    options of the source, e.g. ``teacher``'s ``dim``, ``task``, ``num_classes``, ``widths``, ``noise``,
    ``data_seed``; ``mnist1d``'s ``data_seed``.
    """
    if name not in SOURCES:
        raise unknown("dataset", str(name), available())
    source = SOURCES[name]
    check_kwargs(source, kwargs, f"dataset {name!r}", skip=1)
    fraction = T.check_fraction(random_labels)
    T.check_targets(targets)
    extra_random = T.check_int(extra_random, "extra_random")
    seed = T.check_int(seed, "seed")
    if not isinstance(verify, bool):
        raise ConfigError(f"verify must be True or False, got {verify!r}")
    raw = source(SourceRequest(root, n_train, n_test, extra_random, verify), **kwargs)
    if raw.is_regression:
        ds = _regression_dataset(raw, name, n_train, classes, fraction, extra_random, targets, n_test)
    else:
        args = (n_train, classes, fraction, extra_random, targets, seed, n_test)
        ds = _classification_dataset(raw, name, *args)
    transforms = {
        "n_train": n_train,
        "n_test": n_test,
        "classes": None if classes is None else [int(c) for c in classes],
        "random_labels": fraction,
        "extra_random": extra_random,
        "targets": targets,
        "seed": seed,
    }
    ds.provenance = {"name": name, **raw.provenance, "transforms": transforms}
    return ds


def _classification_dataset(
    raw: RawData,
    name: str,
    n_train: int | None,
    classes: Sequence[int] | None,
    fraction: float,
    extra_random: int,
    targets: str,
    seed: int,
    n_test: int | None,
) -> Dataset:
    x, labels, xt, labels_t, k = raw.x_train, raw.labels_train, raw.x_test, raw.labels_test, raw.num_classes
    if classes is not None:
        idx, labels, idx_t, labels_t = T.select_classes(labels, labels_t, classes, k)
        x, xt, k = x[idx], xt[idx_t], len(classes)
    head, pool = T.take_first(len(labels), n_train, "n_train")
    head_t, _ = T.take_first(len(labels_t), n_test, "n_test")
    xt, labels_t = xt[head_t], labels_t[head_t]
    true = labels[head]
    train_labels = T.randomize_labels(true, fraction, k, T.stream(seed, T.RANDOM_LABELS_STREAM))
    extra, extra_labels = T.draw_extra(len(pool), extra_random, k, T.stream(seed, T.EXTRA_RANDOM_STREAM))
    chosen = np.concatenate([head, pool[extra]])
    train_labels = np.concatenate([train_labels, extra_labels])
    true = np.concatenate([true, labels[pool[extra]]])
    train = Split(
        T.to_float(x[chosen], raw.scale),
        T.encode_targets(train_labels, k, targets),
        T.encode_targets(train_labels, k, "index"),
        T.encode_targets(true, k, "index"),
    )
    test_index = T.encode_targets(labels_t, k, "index")
    test = Split(T.to_float(xt, raw.scale), T.encode_targets(labels_t, k, targets), test_index, test_index)
    return Dataset(train, test, k, raw.input_shape, name)


def _regression_dataset(
    raw: RawData,
    name: str,
    n_train: int | None,
    classes: Sequence[int] | None,
    fraction: float,
    extra_random: int,
    targets: str,
    n_test: int | None,
) -> Dataset:
    """Regression targets are real-valued: label transforms do not apply and are rejected."""
    rejected = {
        "classes": classes is not None,
        "random_labels": fraction > 0,
        "extra_random": extra_random > 0,
        "targets='index'": targets == "index",
    }
    if any(rejected.values()):
        bad = ", ".join(k for k, v in rejected.items() if v)
        raise ConfigError(f"{name} regression has real-valued targets; {bad} only apply to classification")
    assert raw.values_train is not None and raw.values_test is not None
    head, _ = T.take_first(len(raw.labels_train), n_train, "n_train")
    head_t, _ = T.take_first(len(raw.labels_test), n_test, "n_test")
    splits = []
    for x, values, labels, index in (
        (raw.x_train, raw.values_train, raw.labels_train, head),
        (raw.x_test, raw.values_test, raw.labels_test, head_t),
    ):
        label_tensor = T.encode_targets(labels[index], raw.num_classes, "index")
        splits.append(
            Split(
                T.to_float(x[index], raw.scale), T.to_float(values[index], None), label_tensor, label_tensor
            )
        )
    return Dataset(splits[0], splits[1], raw.num_classes, raw.input_shape, name)
