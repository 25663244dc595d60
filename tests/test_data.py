"""fm.data: file formats round-trip, each transform vs an independent reference, errors, embedded sets."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from flatminima import data
from flatminima.errors import ConfigError, DataNotFoundError, UnknownNameError

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    """IDX written from its specification: 0, 0, type 0x08 (ubyte), ndim, big-endian int32 dims, data."""
    payload = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def make_idx_set(directory: Path, compress: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "x": rng.integers(0, 256, size=(12, 6, 5), dtype=np.uint8),
        "y": rng.integers(0, 10, size=12).astype(np.uint8),
        "xt": rng.integers(0, 256, size=(4, 6, 5), dtype=np.uint8),
        "yt": rng.integers(0, 10, size=4).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, key in zip(IDX_NAMES, ("x", "y", "xt", "yt"), strict=True):
        write_idx(directory / name, arrays[key], compress)
    return arrays


def content_md5(path: Path) -> str:
    """MD5 of a file's content, gunzipped first when it is a .gz file (as the published checksums are)."""
    raw = path.read_bytes()
    return hashlib.md5(gzip.decompress(raw) if path.suffix == ".gz" else raw).hexdigest()


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    arrays = make_idx_set(tmp_path / "FashionMNIST" / "raw", compress)
    ds = data.load("fashion-mnist", root=tmp_path, targets="index", verify=False)
    assert ds.input_shape == (1, 6, 5) and ds.num_classes == 10 and ds.name == "fashion-mnist"
    # Not the official files: loaded only because verify=False, and the provenance says so.
    prov = ds.provenance
    assert prov["verified"] is False and prov["verify"] is False and prov["name"] == "fashion-mnist"
    assert prov["directory"] == str((tmp_path / "FashionMNIST" / "raw").absolute())
    suffix = ".gz" if compress else ""
    assert prov["files"] == {
        n + suffix: content_md5(tmp_path / "FashionMNIST" / "raw" / (n + suffix)) for n in IDX_NAMES
    }
    assert ds.train.x.dtype == torch.float32 and ds.train.labels.dtype == torch.int64
    expected = (arrays["x"][:, None] / np.float32(255)).astype(np.float32)
    np.testing.assert_array_equal(ds.train.x.numpy(), expected)
    np.testing.assert_array_equal(ds.train.labels.numpy(), arrays["y"])
    np.testing.assert_array_equal(ds.test.x.numpy()[:, 0] * 255, arrays["xt"].astype(np.float32))
    np.testing.assert_array_equal(ds.test.y.numpy(), arrays["yt"])
    assert len(ds.train) == 12 and len(ds.test) == 4


def test_idx_found_via_env_and_root_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = make_idx_set(tmp_path / "mnist", compress=True, seed=1)
    monkeypatch.setenv("FLATMINIMA_DATA", str(tmp_path))
    ds = data.load("mnist", verify=False)
    np.testing.assert_array_equal(ds.train.labels.numpy(), arrays["y"])


def test_corrupt_idx_is_a_config_error(tmp_path: Path) -> None:
    make_idx_set(tmp_path, compress=False)
    (tmp_path / IDX_NAMES[0]).write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 12, 6, 5) + b"\x01" * 10)
    for verify in (True, False):  # the structural error, not just "checksum mismatch", either way
        with pytest.raises(ConfigError, match="truncated or corrupt") as info:
            data.load("mnist", root=tmp_path, verify=verify)
        assert IDX_NAMES[0] in str(info.value)


def write_cifar(directory: Path, n_per_batch: int = 3) -> tuple[np.ndarray, ...]:
    """Batches as in the official python version: pickled dicts with bytes keys, data uint8 [n, 3072]."""
    rng = np.random.default_rng(5)
    directory.mkdir(parents=True)
    rows, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        with open(directory / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"data": x, b"labels": y}, fh, protocol=2)
        rows.append(x)
        labels.append(np.asarray(y))
    return np.concatenate(rows[:5]), np.concatenate(labels[:5]), rows[5], labels[5]


def test_cifar_round_trip(tmp_path: Path) -> None:
    x, y, xt, yt = write_cifar(tmp_path / "cifar-10-batches-py")
    ds = data.load("cifar10", root=tmp_path, verify=False)
    assert ds.provenance["verified"] is False and len(ds.provenance["files"]) == 6
    assert ds.input_shape == (3, 32, 32) and len(ds.train) == 15 and len(ds.test) == 3
    # Row layout: the red plane (1024 values, row-major 32x32), then green, then blue.
    for i in (0, 7, 14):
        for c in range(3):
            expected = x[i, 1024 * c : 1024 * (c + 1)].reshape(32, 32) / np.float32(255)
            np.testing.assert_allclose(ds.train.x[i, c].numpy(), expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(ds.train.labels.numpy(), y)
    np.testing.assert_array_equal(ds.test.labels.numpy(), yt)
    np.testing.assert_allclose(ds.test.x.flatten(1).numpy() * 255, xt.astype(np.float32), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(ds.train.y.argmax(1).numpy(), y)


def test_missing_files_message_names_files_and_directories(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        data.load("cifar10", root=tmp_path)
    message = str(info.value)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        assert name in message
    for directory in (tmp_path, tmp_path / "cifar-10-batches-py", tmp_path / "cifar10"):
        assert str(directory.absolute()) in message
    with pytest.raises(DataNotFoundError) as info:
        data.load("mnist", root=tmp_path)
    assert all(n in str(info.value) for n in IDX_NAMES) and str(tmp_path / "MNIST" / "raw") in str(info.value)
    assert "make data" not in str(info.value)  # MNIST is never installed automatically
    with pytest.raises(DataNotFoundError, match="make data"):
        data.load("fashion-mnist", root=tmp_path)


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return data.load("digits")


def test_digits_shapes_and_scaling(digits: data.Dataset) -> None:
    from sklearn.datasets import load_digits

    assert (len(digits.train), len(digits.test)) == (1200, 597)
    assert digits.input_shape == (1, 8, 8) and digits.train.x.shape == (1200, 1, 8, 8)
    assert digits.train.x.min() == 0 and digits.train.x.max() == 1
    # Every image is an sklearn digit divided by 16, with its label; train and test are disjoint and complete.
    ref = load_digits()
    pairs = zip(ref.images / 16, ref.target, strict=True)
    table = {img.astype(np.float32).tobytes(): int(t) for img, t in pairs}
    all_x = torch.cat([digits.train.x, digits.test.x])[:, 0].numpy()
    all_y = torch.cat([digits.train.labels, digits.test.labels]).numpy()
    assert sorted(np.bincount(all_y)) == sorted(np.bincount(ref.target))
    assert all(table[x.tobytes()] == y for x, y in zip(all_x, all_y, strict=True))


def test_classes_subset_relabels_in_given_order(digits: data.Dataset) -> None:
    ds = data.load("digits", classes=[3, 1], targets="index")
    assert ds.num_classes == 2 and ds.train.y.shape == (len(ds.train),)
    for new, old in enumerate((3, 1)):
        mask = digits.train.labels == old
        torch.testing.assert_close(ds.train.x[ds.train.labels == new], digits.train.x[mask])
    keep = (digits.train.labels == 3) | (digits.train.labels == 1)
    torch.testing.assert_close(ds.train.x, digits.train.x[keep])  # original order kept
    assert set(ds.test.labels.tolist()) == {0, 1}
    assert len(ds.test) == int(((digits.test.labels == 3) | (digits.test.labels == 1)).sum())


def test_first_n_after_class_filter(digits: data.Dataset) -> None:
    ds = data.load("digits", n_train=100, n_test=50)
    torch.testing.assert_close(ds.train.x, digits.train.x[:100])
    torch.testing.assert_close(ds.train.labels, digits.train.labels[:100])
    torch.testing.assert_close(ds.test.x, digits.test.x[:50])
    sub = data.load("digits", classes=[0, 1], n_train=20)
    keep = (digits.train.labels == 0) | (digits.train.labels == 1)
    torch.testing.assert_close(sub.train.x, digits.train.x[keep][:20])


def test_random_labels_fraction_reproducible_and_test_clean(digits: data.Dataset) -> None:
    ds = data.load("digits", n_train=1000, random_labels=0.5, seed=7)
    changed = (ds.train.labels != digits.train.labels[:1000]).float().mean().item()
    # 500 labels redrawn uniformly over 10 classes: 450 change in expectation (std ~ 6.7).
    assert abs(changed - 0.45) < 0.04
    torch.testing.assert_close(ds.train.x, digits.train.x[:1000])
    torch.testing.assert_close(ds.train.true_labels, digits.train.labels[:1000])
    assert torch.equal(ds.train.corrupted, ds.train.labels != ds.train.true_labels)
    torch.testing.assert_close(ds.test.labels, digits.test.labels)
    torch.testing.assert_close(ds.test.y, digits.test.y)
    torch.testing.assert_close(ds.train.y.argmax(1), ds.train.labels)
    again = data.load("digits", n_train=1000, random_labels=0.5, seed=7)
    assert torch.equal(again.train.labels, ds.train.labels)
    other = data.load("digits", n_train=1000, random_labels=0.5, seed=8)
    assert not torch.equal(other.train.labels, ds.train.labels)
    full = data.load("digits", random_labels=1.0, seed=1)
    counts = torch.bincount(full.train.labels, minlength=10).float()
    assert counts.min() > 80 and counts.max() < 160  # ~ uniform: 120 per class expected
    assert abs((full.train.labels != digits.train.labels).float().mean().item() - 0.9) < 0.04


def test_extra_random_appends_pool_examples_with_random_labels(digits: data.Dataset) -> None:
    ds = data.load("digits", n_train=100, extra_random=50, seed=3)
    assert len(ds.train) == 150 and ds.train.y.shape == (150, 10)
    torch.testing.assert_close(ds.train.x[:100], digits.train.x[:100])
    torch.testing.assert_close(ds.train.labels[:100], digits.train.labels[:100])
    pool_x, pool_y = digits.train.x[100:].flatten(1), digits.train.labels[100:]
    match = (ds.train.x[100:].flatten(1)[:, None, :] == pool_x[None]).all(-1)  # [50, pool]
    assert (match.sum(1) >= 1).all()  # every extra image comes from the remaining pool
    rows = match.float().argmax(1)
    assert len(set(rows.tolist())) == 50  # drawn without replacement
    torch.testing.assert_close(ds.train.true_labels[100:], pool_y[rows])
    # Random labels: about 1 - 1/10 of them differ from the true class.
    assert ds.train.corrupted[100:].float().mean() > 0.6 and not ds.train.corrupted[:100].any()
    same = data.load("digits", n_train=100, extra_random=50, seed=3, random_labels=0.2)
    torch.testing.assert_close(same.train.x, ds.train.x)  # adding random_labels leaves the extra draw alone
    with pytest.raises(ConfigError, match="only 100 remain"):
        data.load("digits", n_train=1100, extra_random=101)


def test_targets_encoding(digits: data.Dataset) -> None:
    index = data.load("digits", n_train=30, targets="index")
    assert index.train.y.dtype == torch.int64 and torch.equal(index.train.y, index.train.labels)
    onehot = digits.train.y
    assert onehot.dtype == torch.float32 and torch.equal(onehot.sum(1), torch.ones(len(onehot)))
    assert torch.equal(onehot.argmax(1), digits.train.labels)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"random_labels": 1.5}, "fraction"),
        ({"random_labels": -0.1}, "fraction"),
        ({"n_train": 0}, "out of range"),
        ({"n_train": 5000}, "out of range"),
        ({"n_train": 2.5}, "integer"),
        ({"n_test": 598}, "out of range"),
        ({"classes": [10]}, "out of range"),
        ({"classes": [1, 1]}, "duplicates"),
        ({"classes": []}, "non-empty"),
        ({"extra_random": -1}, "extra_random must be an integer >= 0"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"targets": "soft"}, "unknown targets"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        data.load("digits", **kwargs)


def test_unknown_dataset_lists_choices() -> None:
    with pytest.raises(UnknownNameError, match="cifar10, digits, fashion-mnist, mnist, mnist1d, teacher"):
        data.load("imagenet")
    assert data.available() == ["cifar10", "digits", "fashion-mnist", "mnist", "mnist1d", "teacher"]


def test_mnist1d_generated_locally_and_reproducible() -> None:
    state = np.random.get_state()[1].copy(), random.getstate()
    ds = data.load("mnist1d")
    assert np.array_equal(np.random.get_state()[1], state[0]) and random.getstate() == state[1]
    assert (len(ds.train), len(ds.test), ds.input_shape, ds.num_classes) == (4000, 1000, (40,), 10)
    assert abs(ds.train.x.mean().item()) < 0.05 and abs(ds.train.x.std().item() - 1) < 0.05
    assert torch.bincount(ds.train.labels, minlength=10).min() > 300
    again = data.load("mnist1d", n_train=100)
    torch.testing.assert_close(again.train.x, ds.train.x[:100])
    assert again.provenance["generator"]["data_seed"] == 42 and again.provenance["source"] == "embedded"


def test_teacher_classification_and_regression() -> None:
    ds = data.load("teacher", n_train=100, n_test=30, dim=5, num_classes=3, data_seed=2)
    assert ds.train.x.shape == (100, 5) and ds.test.x.shape == (30, 5) and ds.train.y.shape == (100, 3)
    assert ds.input_shape == (5,) and set(ds.train.labels.tolist()) <= {0, 1, 2}
    bigger = data.load("teacher", n_train=200, n_test=30, dim=5, num_classes=3, data_seed=2)
    torch.testing.assert_close(bigger.train.x[:100], ds.train.x)  # nested training sets
    torch.testing.assert_close(bigger.test.x, ds.test.x)  # test set independent of n_train
    torch.testing.assert_close(bigger.train.labels[:100], ds.train.labels)
    other = data.load("teacher", n_train=100, dim=5, num_classes=3, data_seed=3)
    assert not torch.equal(other.train.x, ds.train.x)
    reg = data.load("teacher", task="regression", n_train=64, num_classes=2, dim=4, data_seed=2)
    assert reg.train.y.shape == (64, 2) and reg.train.y.dtype == torch.float32
    torch.testing.assert_close(reg.train.labels, reg.train.y.argmax(1))  # noise-free: labels = argmax f(x)
    noisy = data.load("teacher", task="regression", n_train=64, num_classes=2, dim=4, data_seed=2, noise=0.5)
    assert 0.3 < (noisy.train.y - reg.train.y).std().item() < 0.7
    with pytest.raises(ConfigError, match="random_labels"):
        data.load("teacher", task="regression", random_labels=0.1)
    with pytest.raises(ConfigError, match="task"):
        data.load("teacher", task="ranking")
