"""Data sets that need no download: scikit-learn digits, MNIST-1D (generated) and a random-teacher task."""

from __future__ import annotations

import random
from functools import lru_cache
from importlib import metadata
from itertools import pairwise

import numpy as np

from ..errors import ConfigError
from .raw import RawData
from .request import SourceRequest
from .transforms import check_count, check_int

DIGITS_SPLIT_SEED = 0
DIGITS_N_TRAIN = 1200
MNIST1D_DEFAULT_SEED = 42
TEACHER_DEFAULT_N = 1000
TASKS = ("classification", "regression")


def digits(req: SourceRequest) -> RawData:
    """scikit-learn ``load_digits``: 1797 8x8 grey images, 10 classes, pixel values 0..16 (scaled by /16).

    Fixed split, independent of ``load``'s ``seed``: a permutation drawn with ``default_rng(0)``; its first
    1200 images are the training set, the other 597 the test set. ``input_shape`` is (1, 8, 8).
    """
    x, labels, xt, labels_t = _digits_arrays()
    generator = {
        "function": "sklearn.datasets.load_digits",
        "scikit-learn": _version("scikit-learn"),
        "split_seed": DIGITS_SPLIT_SEED,
        "n_train": DIGITS_N_TRAIN,
    }
    return RawData(x, labels, xt, labels_t, 10, (1, 8, 8), scale=16.0, provenance=_embedded(generator))


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _embedded(generator: dict[str, object]) -> dict[str, object]:
    """Provenance of a generated set: how to regenerate it (see ``Dataset.provenance``)."""
    return {"source": "embedded", "generator": generator}


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.uint8)[:, None]  # values are integers 0..16
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    tr, te = order[:DIGITS_N_TRAIN], order[DIGITS_N_TRAIN:]
    return _read_only(x[tr], labels[tr], x[te], labels[te])


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cached arrays are shared between calls: freeze them so no transform can modify them in place."""
    for a in arrays:
        a.setflags(write=False)
    return arrays


@lru_cache(maxsize=4)
def _mnist1d_arrays(data_seed: int) -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = data_seed
    saved = random.getstate(), np.random.get_state()
    try:  # make_dataset reseeds the global generators; leave them as we found them
        d = make_dataset(args)
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
    return _read_only(
        d["x"].astype(np.float32),
        d["y"].astype(np.int64),
        d["x_test"].astype(np.float32),
        d["y_test"].astype(np.int64),
    )


def mnist1d(req: SourceRequest, data_seed: int = MNIST1D_DEFAULT_SEED) -> RawData:
    """MNIST-1D (Greydanus 2020) built locally by the ``mnist1d`` package's ``make_dataset`` generator.

    Default generator arguments (5000 sequences of length 40, 80/20 train/test split -> 4000/1000,
    standardised to mean 0, std 1, so no [0, 1] scaling). ``data_seed`` is the generator's seed; its default
    42 is the package default, i.e. the canonical data set. Never uses the package's download URL.
    ``input_shape`` is (40,).
    """
    seed = check_int(data_seed, "data_seed")
    x, y, xt, yt = _mnist1d_arrays(seed)
    generator = {
        "function": "mnist1d.data.make_dataset(get_dataset_args())",
        "mnist1d": _version("mnist1d"),
        "data_seed": seed,
    }
    return RawData(x, y, xt, yt, 10, (40,), provenance=_embedded(generator))


def _teacher_forward(x: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    h = x
    for w in weights[:-1]:
        h = np.maximum(h @ w, 0.0)
    return h @ weights[-1]


def teacher(
    req: SourceRequest,
    dim: int = 10,
    task: str = "classification",
    num_classes: int | None = None,
    widths: tuple[int, ...] | list[int] = (32,),
    noise: float = 0.0,
    data_seed: int = 0,
) -> RawData:
    """Synthetic teacher-student task: x ~ N(0, I_dim), targets from a fixed random ReLU MLP ``f``.

    ``f`` has hidden ``widths`` (weights N(0, 2/fan_in), He scaling) and ``num_classes`` outputs (weights
    N(0, 1/fan_in)), no biases. ``task="classification"``: label = argmax_k f_k(x), ``num_classes`` default 2.
    ``task="regression"``: targets y = f(x) + noise * N(0, 1) of shape [n, num_classes] (default 1 output);
    ``labels`` then hold argmax_k f_k(x) (all 0 for one output) so "accuracy" stays defined.
    Sizes: ``n_train`` (+ ``extra_random`` pool) and ``n_test`` examples, 1000 each by default. Separate
    streams of ``data_seed`` draw the teacher, the training inputs and the test inputs, so training sets of
    different sizes are nested and the test set does not depend on ``n_train``.
    """
    if task not in TASKS:
        raise ConfigError(f"teacher task must be one of {', '.join(TASKS)}, got {task!r}")
    classification = task == "classification"
    k = (2 if classification else 1) if num_classes is None else num_classes
    sizes = {"dim": dim, "num_classes": k, **{f"widths[{i}]": w for i, w in enumerate(widths)}}
    for what, value in sizes.items():
        check_count(value, f"teacher {what}", 10**7)
    if classification and k < 2:
        raise ConfigError("teacher classification needs num_classes >= 2")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or noise < 0:
        raise ConfigError(f"teacher noise must be a non-negative number, got {noise!r}")
    if noise and classification:
        raise ConfigError("teacher noise applies to task='regression'; use random_labels for classification")
    n_train = TEACHER_DEFAULT_N if req.n_train is None else check_count(req.n_train, "n_train", 10**9)
    n_test = TEACHER_DEFAULT_N if req.n_test is None else check_count(req.n_test, "n_test", 10**9)
    seed = check_int(data_seed, "data_seed")
    rng_w = np.random.default_rng([seed, 0])
    layers = [dim, *widths, k]
    weights = [
        rng_w.standard_normal((a, b)) * np.sqrt((2.0 if i < len(layers) - 2 else 1.0) / a)
        for i, (a, b) in enumerate(pairwise(layers))
    ]
    x = np.random.default_rng([seed, 1]).standard_normal((n_train + max(int(req.extra_random), 0), dim))
    xt = np.random.default_rng([seed, 2]).standard_normal((n_test, dim))
    f, ft = _teacher_forward(x, weights), _teacher_forward(xt, weights)
    labels, labels_t = f.argmax(1).astype(np.int64), ft.argmax(1).astype(np.int64)
    x32, xt32 = x.astype(np.float32), xt.astype(np.float32)
    generator = {
        "dim": dim,
        "task": task,
        "num_classes": k,
        "widths": [int(w) for w in widths],
        "noise": float(noise),
        "data_seed": seed,
        "n_train": n_train + max(int(req.extra_random), 0),
        "n_test": n_test,
    }
    prov = _embedded(generator)
    if classification:
        return RawData(x32, labels, xt32, labels_t, k, (dim,), provenance=prov)
    rng_noise = np.random.default_rng([seed, 3])
    values = (f + noise * rng_noise.standard_normal(f.shape)).astype(np.float32)
    values_t = (ft + noise * rng_noise.standard_normal(ft.shape)).astype(np.float32)
    return RawData(
        x32, labels, xt32, labels_t, k, (dim,), values_train=values, values_test=values_t, provenance=prov
    )
