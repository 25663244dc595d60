"""The shared argument checks of ``flatminima._validate``: what they accept, what they refuse, and how."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from flatminima import _validate as v
from flatminima.errors import ConfigError, UnknownNameError


@pytest.mark.parametrize(
    ("value", "bounds"),
    [
        (math.nan, {}),
        (math.inf, {}),
        (-math.inf, {"ge": 0}),
        (0.0, {"gt": 0}),
        (1.0, {"gt": 0, "lt": 1}),
        (-1e-9, {"ge": 0}),
        (True, {}),
        ("0.1", {}),
        (None, {}),
        (10**400, {}),  # an int beyond float range
        (torch.tensor([1.0, 2.0]), {}),
    ],
)
def test_check_float_refuses(value, bounds):
    with pytest.raises(ConfigError, match=r"^lr must be a finite number"):
        v.check_float("lr", value, **bounds)


def test_check_float_accepts_reals_and_returns_floats():
    assert v.check_float("lr", 1) == 1.0 and isinstance(v.check_float("lr", 1), float)
    assert v.check_float("lr", np.float32(0.5), gt=0, lt=1) == 0.5
    assert v.check_float("lr", torch.tensor(0.25), gt=0) == 0.25
    assert v.check_float("x", 0.0, ge=0) == 0.0


def test_check_float_message_names_bounds_and_value():
    with pytest.raises(ConfigError) as info:
        v.check_float("--tol", math.nan, gt=0, lt=1)
    assert str(info.value) == "--tol must be a finite number > 0 and < 1, got nan"


@pytest.mark.parametrize("value", [2.5, 2.0, True, "3", None, np.float64(3.0)])
def test_check_int_refuses_non_integers(value):
    with pytest.raises(ConfigError, match="chunk_size must be an integer"):
        v.check_int("chunk_size", value, ge=1)


def test_check_int_bounds_and_numpy_integers():
    assert v.check_int("k", np.int64(3), ge=1) == 3 and type(v.check_int("k", np.int64(3))) is int
    with pytest.raises(ConfigError, match=r"k must be an integer >= 1, got 0"):
        v.check_int("k", 0, ge=1)
    with pytest.raises(ConfigError, match=r"<= 5"):
        v.check_int("k", 6, le=5)


@pytest.mark.parametrize("seed", [-1, 2**63, 2**70, 1.0, True])
def test_check_seed_refuses(seed):
    with pytest.raises(ConfigError, match=r"seed must be an integer >= 0 and <= 9223372036854775807"):
        v.check_seed(seed)


def test_seed_bound_is_accepted_by_torch_numpy_and_random():
    """SEED_MAX is usable everywhere a seed goes (and leaves room for derived seeds seed + k)."""
    import random

    seed = v.check_seed(v.SEED_MAX)
    torch.manual_seed(seed + 1000)
    torch.Generator().manual_seed(seed)
    np.random.default_rng(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def test_check_choice():
    assert v.check_choice("method", "exact", ("auto", "exact")) == "exact"
    with pytest.raises(UnknownNameError, match=r"unknown method 'bogus'; choose one of: auto, exact"):
        v.check_choice("method", "bogus", ("auto", "exact"))


def test_short_never_expands_a_huge_value():
    """A billion-laughs structure (shared references, 9**9 leaves) is quoted in a few dozen characters."""
    value: object = ["lol"] * 9
    for _ in range(8):
        value = [value] * 9
    text = v.short(value)
    assert len(text) <= 80 and text.startswith("[[")
    assert len(v.short("x" * 10**7)) <= 80
    assert v.short(0.5) == "0.5"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert v.short(Broken()).startswith("<Broken")  # a broken __repr__ does not hide the actual error


def test_format_bytes_and_seconds():
    assert v.format_bytes(512) == "512 B"
    assert v.format_bytes(1.5 * 2**30) == "1.5 GiB"
    assert v.format_seconds(30) == "30 s"
    assert v.format_seconds(6.6 * 3600) == "6.6 h"
    assert v.format_seconds(10 * 86400) == "10 days"


def test_check_memory_against_the_machine():
    total = v.machine_memory()
    assert total is not None and total > 2**26  # at least 64 MiB: a real number was read
    v.check_memory("a small array", 1024)
    with pytest.raises(ConfigError) as info:
        v.check_memory("a grid", 4 * total, hint="use fewer points")
    message = str(info.value)
    assert message.startswith("a grid needs about ") and "more than this machine's" in message
    assert message.endswith("; use fewer points")


def test_check_duration():
    v.check_duration("a slice", 3600.0)
    with pytest.raises(ConfigError, match=r"a slice would take about 12 days on this machine"):
        v.check_duration("a slice", 12 * 86400.0)
    with pytest.raises(ConfigError, match=r"about 2 s"):
        v.check_duration("a slice", 2.0, limit=1.0)


def test_check_writable_dir(tmp_path, monkeypatch):
    assert v.check_writable_dir(tmp_path) == tmp_path
    assert v.check_writable_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # nothing is created by the check
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        v.check_writable_dir(tmp_path / "file", "--out folder")
    with pytest.raises(ConfigError, match="is not a folder"):
        v.check_writable_dir(tmp_path / "file" / "sub")
    # A read-only folder (os.access is what root would bypass, so it is simulated here).
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: str(p) != str(tmp_path) and real_access(p, mode))
    with pytest.raises(ConfigError, match="is not writable"):
        v.check_writable_dir(tmp_path)
    with pytest.raises(ConfigError, match=r"cannot create .* is not writable"):
        v.check_writable_dir(tmp_path / "child")
