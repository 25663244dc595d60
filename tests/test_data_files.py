"""fm.data file sets: search order, checksum verification and identity, corrupt files, safe unpickling.

The published checksums belong to the official files, which CI does not have: the verified path is exercised
by putting the tiny test files' own MD5s (computed here with hashlib, independently of the loader) into the
checksum table. One test uses the real Fashion-MNIST where Debian's package installed it.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from flatminima import data
from flatminima.config import TrainConfig, dataset_from_config, parse
from flatminima.data import checksums, files
from flatminima.data.__main__ import main as check_main
from flatminima.data.request import SourceRequest
from flatminima.errors import ConfigError, DataNotFoundError

from .test_data import IDX_NAMES, content_md5, make_idx_set, write_cifar

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")
CIFAR_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    files._cache.clear()


def published(monkeypatch: pytest.MonkeyPatch, name: str, directory: Path, names: list[str]) -> None:
    """Pretend the files in ``directory`` are the official ``name`` files: their MD5s become the published."""
    table = {}
    for n in names:
        path = directory / n if (directory / n).exists() else directory / f"{n}.gz"
        table[n] = content_md5(path)
    monkeypatch.setitem(checksums.PUBLISHED_MD5, name, table)


# ------------------------------------------------------------------------------------------- search order
def test_search_order_env_then_cwd_then_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env, cwd, system = tmp_path / "env", tmp_path / "cwd", tmp_path / "system"
    sets = {
        "env": make_idx_set(env / "fashion-mnist", compress=False, seed=1),
        "cwd": make_idx_set(cwd / "data" / "FashionMNIST" / "raw", compress=True, seed=2),
        "system": make_idx_set(system / "fashion-mnist", compress=True, seed=3),
    }
    root = make_idx_set(tmp_path / "root", compress=False, seed=4)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("FLATMINIMA_SYSTEM_DATA", str(system))
    monkeypatch.setenv("FLATMINIMA_DATA", str(env))

    def labels(**kw: object) -> np.ndarray:
        return data.load("fashion-mnist", targets="index", verify=False, **kw).train.labels.numpy()

    np.testing.assert_array_equal(labels(), sets["env"]["y"])
    np.testing.assert_array_equal(labels(root=tmp_path / "root"), root["y"])  # root= wins over all
    monkeypatch.delenv("FLATMINIMA_DATA")
    np.testing.assert_array_equal(labels(), sets["cwd"]["y"])
    monkeypatch.chdir(tmp_path)
    ds = data.load("fashion-mnist", verify=False)
    np.testing.assert_array_equal(ds.train.labels.numpy(), sets["system"]["y"])
    assert ds.provenance["directory"] == str(system / "fashion-mnist")


def test_root_searches_only_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_idx_set(tmp_path / "env" / "mnist", compress=False)
    make_idx_set(tmp_path / "system" / "mnist", compress=False)
    monkeypatch.setenv("FLATMINIMA_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("FLATMINIMA_SYSTEM_DATA", str(tmp_path / "system"))
    with pytest.raises(DataNotFoundError) as info:
        data.load("mnist", root=tmp_path / "empty", verify=False)
    message = str(info.value)
    assert str(tmp_path / "empty" / "MNIST" / "raw") in message
    assert str(tmp_path / "env") not in message and str(tmp_path / "system") not in message


def test_not_found_lists_every_directory_and_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLATMINIMA_DATA", str(tmp_path / "env"))
    monkeypatch.delenv("FLATMINIMA_SYSTEM_DATA")  # the default system location
    monkeypatch.setattr("flatminima.data.locate.SYSTEM_ROOTS", (str(tmp_path / "usr-share-datasets"),))
    with pytest.raises(DataNotFoundError) as info:
        data.load("fashion-mnist")
    message = str(info.value)
    for directory in (
        tmp_path / "env",
        tmp_path / "env" / "FashionMNIST" / "raw",
        tmp_path / "data",
        tmp_path / "data" / "fashion-mnist",
        tmp_path / "usr-share-datasets" / "fashion-mnist",
    ):
        assert f"{directory}," in message or f"{directory}." in message
    assert all(n in message for n in IDX_NAMES) and "make data" in message
    assert files.search_dirs("fashion-mnist", None)[-1] == tmp_path / "usr-share-datasets" / "fashion-mnist"


# ------------------------------------------------------------------------------------ checksums, identity
@pytest.mark.parametrize("compress", [False, True])
def test_official_checksums_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compress: bool) -> None:
    arrays = make_idx_set(tmp_path, compress=compress)
    published(monkeypatch, "mnist", tmp_path, list(IDX_NAMES))
    ds = data.load("mnist", root=tmp_path, targets="index")  # verify=True is the default
    np.testing.assert_array_equal(ds.test.labels.numpy(), arrays["yt"])
    assert ds.provenance["verified"] is True and ds.provenance["verify"] is True
    assert set(ds.provenance["files"].values()) == set(checksums.PUBLISHED_MD5["mnist"].values())
    # The same official files with verify=False are still recorded as verified: it is a fact about the files.
    assert data.load("mnist", root=tmp_path, verify=False).provenance["verified"] is True


def test_mismatch_refused_unless_verify_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_idx_set(tmp_path, compress=False)
    published(monkeypatch, "mnist", tmp_path, list(IDX_NAMES))
    images = tmp_path / "t10k-images-idx3-ubyte"
    content = bytearray(images.read_bytes())
    content[-1] ^= 0xFF  # one pixel of another "version"
    images.write_bytes(bytes(content))
    with pytest.raises(data.DataVerificationError) as info:
        data.load("mnist", root=tmp_path)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte" in message and "verify=False" in message
    assert "train-images-idx3-ubyte" not in message  # only the file that differs is named
    assert content_md5(images) in message
    ds = data.load("mnist", root=tmp_path, verify=False)
    assert ds.provenance["verified"] is False and ds.provenance["files"][images.name] == content_md5(images)
    assert json.loads(json.dumps(ds.provenance)) == ds.provenance


def test_real_checksum_table_refuses_fake_files(tmp_path: Path) -> None:
    make_idx_set(tmp_path, compress=True)
    with pytest.raises(data.DataVerificationError, match="published checksums"):
        data.load("fashion-mnist", root=tmp_path)
    write_cifar(tmp_path / "cifar-10-batches-py")
    with pytest.raises(data.DataVerificationError, match="CIFAR-10"):
        data.load("cifar10", root=tmp_path)


@pytest.mark.parametrize("verify", [True, False])
def test_identity_mix_up_names_the_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verify: bool) -> None:
    make_idx_set(tmp_path / "m", compress=True, seed=1)
    make_idx_set(tmp_path / "f", compress=False, seed=2)
    published(monkeypatch, "mnist", tmp_path / "m", list(IDX_NAMES))
    published(monkeypatch, "fashion-mnist", tmp_path / "f", list(IDX_NAMES))
    with pytest.raises(data.DataIdentityError, match=r"these are the Fashion-MNIST files .* not MNIST"):
        data.load("mnist", root=tmp_path / "f", verify=verify)
    with pytest.raises(data.DataIdentityError, match=r"these are the MNIST files .* load them as 'mnist'"):
        data.load("fashion-mnist", root=tmp_path / "m", verify=verify)
    # One file of the other set among our own: named file by file.
    (tmp_path / "m" / "t10k-labels-idx1-ubyte.gz").unlink()
    foreign = (tmp_path / "f" / "t10k-labels-idx1-ubyte").read_bytes()
    (tmp_path / "m" / "t10k-labels-idx1-ubyte").write_bytes(foreign)
    with pytest.raises(data.DataIdentityError, match="t10k-labels-idx1-ubyte is Fashion-MNIST's t10k-labels"):
        data.load("mnist", root=tmp_path / "m", verify=verify)


def test_other_sets_files_skipped_for_later_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_idx_set(tmp_path, compress=False, seed=1)  # MNIST at the top of the data directory
    fashion = make_idx_set(tmp_path / "fashion-mnist", compress=False, seed=2)
    published(monkeypatch, "mnist", tmp_path, list(IDX_NAMES))
    published(monkeypatch, "fashion-mnist", tmp_path / "fashion-mnist", list(IDX_NAMES))
    ds = data.load("fashion-mnist", root=tmp_path, targets="index")
    np.testing.assert_array_equal(ds.train.labels.numpy(), fashion["y"])
    assert ds.provenance["verified"] is True


def test_swapped_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_idx_set(tmp_path, compress=False)
    published(monkeypatch, "mnist", tmp_path, list(IDX_NAMES))
    train, test = tmp_path / IDX_NAMES[1], tmp_path / IDX_NAMES[3]
    a, b = train.read_bytes(), test.read_bytes()
    train.write_bytes(b)
    test.write_bytes(a)
    with pytest.raises(data.DataVerificationError, match="holds the official train-labels-idx1-ubyte"):
        data.load("mnist", root=tmp_path, verify=False)


def test_cache_rereads_a_changed_file(tmp_path: Path) -> None:
    make_idx_set(tmp_path, compress=False, seed=1)
    first = data.load("mnist", root=tmp_path, targets="index", verify=False)
    again = data.load("mnist", root=tmp_path, targets="index", verify=False)
    assert np.array_equal(first.train.x.numpy(), again.train.x.numpy())
    again.provenance["files"].clear()  # callers own their provenance; the cached one is untouched
    assert len(data.load("mnist", root=tmp_path, verify=False).provenance["files"]) == 4
    new = make_idx_set(tmp_path, compress=False, seed=9)
    stat = (tmp_path / IDX_NAMES[1]).stat()
    os.utime(tmp_path / IDX_NAMES[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    reread = data.load("mnist", root=tmp_path, targets="index", verify=False)
    np.testing.assert_array_equal(reread.train.labels.numpy(), new["y"])


# ----------------------------------------------------------------------------------- corrupt IDX files
def idx_bytes(array: np.ndarray, code: int, shape: tuple[int, ...] | None = None) -> bytes:
    """IDX from its specification: 0, 0, type code, ndim, big-endian int32 dims, big-endian values."""
    dims = array.shape if shape is None else shape
    types = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}
    return struct.pack(">BBBB", 0, 0, code, len(dims)) + struct.pack(f">{len(dims)}i", *dims) + (
        array.astype(types[code]).tobytes()
    )


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x00\x00\x08", "truncated inside its header"),
        (b"\x00\x00\x08\x03" + struct.pack(">2i", 12, 6), "truncated inside its header"),
        (b"\x00\x00\x08\x00", "declares 0 dimensions"),
        (b"\x00\x00\x08\x09" + b"\x00" * 36, "declares 9 dimensions"),
        (b"\x00\x00\x08\x03" + struct.pack(">3i", -12, 6, 5), "negative dimension"),
        (b"\x00\x00\x08\x03" + struct.pack(">3i", *[2**31 - 1] * 3) + b"\x00" * 8, "truncated or"),
        (b"\x01\x00\x08\x03", "not an IDX file"),
        (b"\x00\x00\x07\x03", "not an IDX file"),
    ],
)
def test_malformed_idx_header(tmp_path: Path, content: bytes, match: str) -> None:
    make_idx_set(tmp_path, compress=False)
    (tmp_path / IDX_NAMES[0]).write_bytes(content)
    with pytest.raises(ConfigError, match=match) as info:
        data.load("mnist", root=tmp_path, verify=False)
    assert str(tmp_path / IDX_NAMES[0]) in str(info.value)


def test_truncated_and_fake_gzip(tmp_path: Path) -> None:
    make_idx_set(tmp_path, compress=True)
    gz = tmp_path / f"{IDX_NAMES[0]}.gz"
    gz.write_bytes(gz.read_bytes()[:-20])  # cut inside the deflate stream / trailer
    with pytest.raises(ConfigError, match=f"cannot read data file .*{IDX_NAMES[0]}.gz"):
        data.load("mnist", root=tmp_path)
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(ConfigError, match=f"cannot read data file .*{IDX_NAMES[0]}.gz"):
        data.load("mnist", root=tmp_path, verify=False)


def _with_images(tmp_path: Path, train: bytes, test: bytes | None = None) -> None:
    make_idx_set(tmp_path, compress=False)
    (tmp_path / IDX_NAMES[0]).write_bytes(train)
    if test is not None:
        (tmp_path / IDX_NAMES[2]).write_bytes(test)


def test_float_idx_outside_unit_interval_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _with_images(tmp_path, idx_bytes(rng.uniform(0, 255, size=(12, 6, 5)), 0x0D))
    with pytest.raises(ConfigError, match=r"float pixel values must be in \[0, 1\]"):
        data.load("mnist", root=tmp_path, verify=False)
    nan = np.zeros((12, 6, 5))
    nan[0, 0, 0] = np.nan
    _with_images(tmp_path, idx_bytes(nan, 0x0D))
    with pytest.raises(ConfigError, match="1 pixel values are NaN or infinite"):
        data.load("mnist", root=tmp_path, verify=False)


def test_float_idx_in_unit_interval_is_used_unscaled(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x, xt = rng.uniform(0, 1, size=(12, 6, 5)), rng.uniform(0, 1, size=(4, 6, 5))
    _with_images(tmp_path, idx_bytes(x, 0x0D), idx_bytes(xt, 0x0D))
    ds = data.load("mnist", root=tmp_path, verify=False)
    np.testing.assert_array_equal(ds.train.x.numpy()[:, 0], x.astype(np.float32))
    np.testing.assert_array_equal(ds.test.x.numpy()[:, 0], xt.astype(np.float32))
    _with_images(tmp_path, idx_bytes(x, 0x0D), idx_bytes((xt * 255).astype(np.uint8), 0x08))
    with pytest.raises(ConfigError, match="different pixel types"):
        data.load("mnist", root=tmp_path, verify=False)


def test_int16_idx_in_byte_range_scaled_else_refused(tmp_path: Path) -> None:
    x = np.random.default_rng(2).integers(0, 256, size=(12, 6, 5))
    _with_images(tmp_path, idx_bytes(x, 0x0B))
    ds = data.load("mnist", root=tmp_path, verify=False)
    np.testing.assert_array_equal(ds.train.x.numpy()[:, 0], (x / np.float32(255)).astype(np.float32))
    x[3, 2, 1] = 300
    _with_images(tmp_path, idx_bytes(x, 0x0B))
    with pytest.raises(ConfigError, match=r"integer pixel values must be 0\.\.255, found 0\.\.300"):
        data.load("mnist", root=tmp_path, verify=False)


def test_bad_idx_labels(tmp_path: Path) -> None:
    make_idx_set(tmp_path, compress=False)
    (tmp_path / IDX_NAMES[1]).write_bytes(idx_bytes(np.full(12, 0.5), 0x0D))
    with pytest.raises(ConfigError, match="labels must be integers"):
        data.load("mnist", root=tmp_path, verify=False)
    (tmp_path / IDX_NAMES[1]).write_bytes(idx_bytes(np.arange(12), 0x08))
    with pytest.raises(ConfigError, match=r"labels must be 0\.\.9, found 0\.\.11"):
        data.load("mnist", root=tmp_path, verify=False)
    (tmp_path / IDX_NAMES[1]).write_bytes(idx_bytes(np.arange(5), 0x08))
    with pytest.raises(ConfigError, match="do not match"):
        data.load("mnist", root=tmp_path, verify=False)


# ------------------------------------------------------------------------------------- CIFAR-10 pickles
class _WritesMarker:
    """A pickle payload that, when unpickled by plain ``pickle``, runs ``touch marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _cifar_batch_file(path: Path, batch: object, protocol: int = 2) -> None:
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def test_malicious_batch_runs_no_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "cifar-10-batches-py"
    write_cifar(directory)
    # The payload is real: plain pickle runs it (control, on another marker).
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_WritesMarker(control), protocol=2))
    assert control.exists()
    marker = tmp_path / "marker"
    batch = {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 2], b"x": _WritesMarker(marker)}
    _cifar_batch_file(directory / "data_batch_1", batch)
    with pytest.raises(data.DataVerificationError):  # verify=True: refused before unpickling
        data.load("cifar10", root=tmp_path)
    with pytest.raises(data.UnsafePickleError, match=r"refusing to load global posix\.system") as info:
        data.load("cifar10", root=tmp_path, verify=False)
    assert "data_batch_1" in str(info.value) and "nothing in this file was run" in str(info.value)
    # Even a file that somehow matched the checksum table goes through the allow-list.
    published(monkeypatch, "cifar10", directory, CIFAR_NAMES)
    with pytest.raises(data.UnsafePickleError):
        data.load("cifar10", root=tmp_path)
    _cifar_batch_file(directory / "data_batch_1", _WritesMarker(marker), protocol=4)
    with pytest.raises(data.UnsafePickleError):
        data.load("cifar10", root=tmp_path, verify=False)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_allowlist_reads_batches_of_every_protocol(tmp_path: Path, protocol: int) -> None:
    directory = tmp_path / "cifar-10-batches-py"
    write_cifar(directory)
    x = np.random.default_rng(protocol).integers(0, 256, size=(3, 3072), dtype=np.uint8)
    names = [b"a.png", b"b.png", b"c.png"]
    batch = {b"batch_label": b"b1", b"data": x, b"labels": [9, 0, 4], b"filenames": names}
    _cifar_batch_file(directory / "data_batch_1", batch, protocol)
    ds = data.load("cifar10", root=tmp_path, verify=False, targets="index")
    np.testing.assert_array_equal(ds.train.labels.numpy()[:3], [9, 0, 4])
    np.testing.assert_array_equal((ds.train.x[:3].flatten(1).numpy() * 255).round(), x.astype(np.float32))


def test_verified_cifar_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, y, _, _ = write_cifar(tmp_path / "cifar-10-batches-py")
    published(monkeypatch, "cifar10", tmp_path / "cifar-10-batches-py", CIFAR_NAMES)
    ds = data.load("cifar10", root=tmp_path, targets="index")
    assert ds.provenance["verified"] is True
    np.testing.assert_array_equal(ds.train.labels.numpy(), y)


def test_codecs_encode_only_as_latin1(tmp_path: Path) -> None:
    import codecs

    class _Rot13:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return codecs.encode, ("text", "rot13")

    directory = tmp_path / "cifar-10-batches-py"
    write_cifar(directory)
    _cifar_batch_file(directory / "test_batch", {b"data": _Rot13(), b"labels": []})
    with pytest.raises(data.UnsafePickleError, match="only 'latin1'"):
        data.load("cifar10", root=tmp_path, verify=False)


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ([1, 2, 3], "holds a list, not a dict"),
        ({b"data": np.zeros((3, 3072), np.uint8)}, "not a CIFAR-10 batch"),
        ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 10, 2]}, r"must be 0\.\.9, found 0\.\.10"),
        ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, -1, 2]}, r"labels must be 0\.\.9"),
        ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1.5, 2]}, "list of integers"),
        ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]}, "3 images but 2 labels"),
        ({b"data": np.full((3, 3072), 300.0), b"labels": [0, 1, 2]}, "integer numpy array"),
        ({b"data": np.full((3, 3072), 300, np.int16), b"labels": [0, 1, 2]}, r"0\.\.255"),
        ({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, r"shape \[n, 3072\]"),
        ({b"data": [[0] * 3072] * 3, b"labels": [0, 1, 2]}, "integer numpy array"),
    ],
)
def test_malformed_cifar_batch(tmp_path: Path, batch: object, match: str) -> None:
    directory = tmp_path / "cifar-10-batches-py"
    write_cifar(directory)
    _cifar_batch_file(directory / "data_batch_3", batch)
    with pytest.raises(ConfigError, match=match) as info:
        data.load("cifar10", root=tmp_path, verify=False)
    assert "data_batch_3" in str(info.value)


def test_truncated_cifar_batch(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-10-batches-py"
    write_cifar(directory)
    batch = directory / "test_batch"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(ConfigError, match=r"cannot read CIFAR-10 batch .*test_batch"):
        data.load("cifar10", root=tmp_path, verify=False)


# ---------------------------------------------------------------------------- provenance, config, check
def test_verify_argument_and_config_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="verify must be True or False"):
        data.load("digits", verify="no")
    make_idx_set(tmp_path, compress=False)
    config = {
        "data": {"name": "mnist", "root": str(tmp_path), "verify": False},
        "model": {"name": "mlp", "widths": [4]},
        "phases": [{"optimizer": "gd", "lr": 0.1, "max_steps": 1}],
    }
    ds = dataset_from_config(parse(TrainConfig, config))
    assert ds.provenance["verify"] is False and ds.provenance["verified"] is False
    config["data"]["verify"] = True
    with pytest.raises(data.DataVerificationError):
        dataset_from_config(parse(TrainConfig, config))


def test_embedded_provenance_records_generator_and_transforms() -> None:
    ds = data.load("teacher", n_train=50, n_test=20, dim=3, num_classes=2, data_seed=5, random_labels=0.1)
    prov = ds.provenance
    assert prov["name"] == "teacher" and prov["source"] == "embedded"
    assert prov["generator"] == {
        "dim": 3,
        "task": "classification",
        "num_classes": 2,
        "widths": [32],
        "noise": 0.0,
        "data_seed": 5,
        "n_train": 50,
        "n_test": 20,
    }
    assert prov["transforms"]["random_labels"] == 0.1 and prov["transforms"]["n_train"] == 50
    assert json.loads(json.dumps(prov)) == prov  # result files can hold it as is
    digits = data.load("digits", classes=[3, 1]).provenance
    assert digits["generator"]["function"] == "sklearn.datasets.load_digits"
    assert digits["transforms"]["classes"] == [3, 1]


def test_check_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLATMINIMA_DATA", str(tmp_path))
    make_idx_set(tmp_path / "fashion-mnist", compress=True)
    assert check_main(["fashion-mnist"]) == 1  # found but not the official files
    assert "fashion-mnist: unusable" in capsys.readouterr().out
    published(monkeypatch, "fashion-mnist", tmp_path / "fashion-mnist", list(IDX_NAMES))
    assert check_main(["fashion-mnist"]) == 0
    assert "fashion-mnist: verified" in capsys.readouterr().out
    assert check_main([]) == 1  # mnist, cifar10 missing
    out = capsys.readouterr().out
    assert "mnist: not found" in out and "cifar10: not found" in out
    assert check_main(["imagenet"]) == 2


# --------------------------------------------------------------------------------- real Fashion-MNIST
@pytest.mark.skipif(not SYSTEM_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_verifies_not_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLATMINIMA_SYSTEM_DATA")  # the conftest hides system data; this test wants it
    monkeypatch.setenv("FLATMINIMA_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    ds = data.load("fashion-mnist", n_train=100, n_test=100, targets="index")  # found in the system location
    prov = ds.provenance
    assert prov["verified"] is True and prov["directory"] == str(SYSTEM_FASHION)
    for name, digest in checksums.PUBLISHED_MD5["fashion-mnist"].items():  # independent: gunzip + hashlib
        assert content_md5(SYSTEM_FASHION / f"{name}.gz") == digest == prov["files"][f"{name}.gz"]
    raw = files.fashion_mnist(SourceRequest())
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(raw.labels_train).tolist() == [6000] * 10  # Xiao et al. 2017: 6000 per class
    with pytest.raises(data.DataIdentityError, match="these are the Fashion-MNIST files"):
        data.load("mnist", root=SYSTEM_FASHION)
    gz = SYSTEM_FASHION / f"{IDX_NAMES[0]}.gz"
    assert gzip.decompress(gz.read_bytes())[:4] == b"\x00\x00\x08\x03"
