"""Hostile or mistaken run configurations: YAML bombs, duplicated keys, huge values, overflowing seeds,
non-finite hyperparameters and models too large for the machine: each one clear ConfigError line, refused
without expanding the aliases or allocating the model."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from torch import nn

from flatminima.config import (
    MAX_CONFIG_BYTES,
    TrainConfig,
    load_config,
    model_from_config,
    parse,
    read_yaml,
    train_from_config,
)
from flatminima.errors import ConfigError

GOOD = """\
seed: 0
data: {name: digits, n_train: 60}
model: {name: mlp, widths: [8]}
phases:
  - {optimizer: gd, lr: 0.5, max_steps: 6}
"""

# 9**10 leaves once expanded; ~1 KB of text (the fuzz case that grew to ~20 GB in the error message).
LAUGHS = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"{n}: &{n} [{','.join(['*' + p] * 9)}]" for p, n in zip("abcdefghi", "bcdefghij", strict=True)),
        "seed: *j",
    ]
)


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as info:
            load_config(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, peak  # bounded work: nothing was expanded (9**10 leaves would need GBs)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def test_billion_laughs_is_refused_before_validation(tmp_path):
    assert "expands (through anchors and aliases) to more than" in _error(tmp_path, LAUGHS)


def test_a_bomb_under_the_node_bound_is_quoted_short(tmp_path):
    """Three levels (729 leaves) pass the size bound; the validation error quotes the value capped."""
    text = "\n".join(LAUGHS.splitlines()[:3]) + "\nseed: *c\n" + GOOD.split("\n", 1)[1]
    message = _error(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'run.yaml'}: seed: ") and "[['lol'" in message


def test_anchors_and_merge_keys_still_work(tmp_path):
    """Aliases are legitimate YAML; a merge key's value may be overridden (that is no duplicate)."""
    text = "defaults: &p {optimizer: gd, lr: 0.5, max_steps: 6}\nphases:\n  - *p\n  - {<<: *p, lr: 0.1}\n"
    data = read_yaml(_written(tmp_path, text))
    assert data["phases"] == [{"optimizer": "gd", "lr": 0.5, "max_steps": 6}, {"optimizer": "gd", "lr": 0.1,
                              "max_steps": 6}]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (GOOD + "seed: 1\n", "line 6, column 1: duplicated key 'seed'"),
        (
            GOOD.replace("n_train: 60}", "n_train: 60, n_train: 70}"),
            "line 2, column 35: duplicated key 'n_train'",
        ),
    ],
)
def test_duplicated_keys_are_an_error(tmp_path, text, where):
    message = _error(tmp_path, text)
    assert "malformed YAML at " in message and message.endswith(where)


def test_recursive_alias_deep_nesting_and_huge_files(tmp_path):
    assert "an alias refers to a value that contains it" in _error(tmp_path, "a: &a [*a]\n" + GOOD)
    assert _error(tmp_path, "seed: " + "[" * 50_000 + "]" * 50_000 + "\n").endswith("nested too deeply")
    huge = GOOD + "# " + "x" * MAX_CONFIG_BYTES + "\n"
    assert "is too large for a run configuration" in _error(tmp_path, huge)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("seed: 1.0e+23", "seed: must be an integer in [0, 9223372036854775807] (got 1e+23)"),
        ("seed: 100000000000000000000000", "seed: must be <= 9223372036854775807"),
        ("seed: -1", "seed: must be >= 0"),
    ],
)
def test_seeds_must_fit(tmp_path, line, expected):
    assert expected in _error(tmp_path, GOOD.replace("seed: 0", line))


def test_data_seed_and_the_seed_override_are_checked_too(tmp_path):
    assert "data.seed: must be >= 0" in _error(tmp_path, GOOD.replace("n_train: 60", "n_train: 60, seed: -2"))
    cfg = load_config(_written(tmp_path, GOOD))
    with pytest.raises(ConfigError, match=r"seed must be an integer >= 0 and <= 9223372036854775807"):
        train_from_config(cfg, tmp_path / "out", seed=2**70)
    assert not (tmp_path / "out").exists()


def _written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("lr: 0.5", "lr: .inf", "phases.0.lr"),
        ("lr: 0.5", "lr: 0.5, momentum: .nan", "phases.0.momentum"),
        ("max_steps: 6", "max_steps: 6, max_epochs: .inf", "phases.0.max_epochs"),
        ("seed: 0", "seed: 0\ndiverge_factor: .inf", "diverge_factor"),
        ("n_train: 60", "n_train: 60, random_labels: .nan", "data.random_labels"),
    ],
)
def test_float_settings_must_be_finite(tmp_path, old, new, field):
    assert f"{field}: must be a finite number (got " in _error(tmp_path, GOOD.replace(old, new))


def test_a_long_rejected_value_is_quoted_short(tmp_path):
    message = _error(tmp_path, GOOD + "loss: " + "x" * 100_000 + "\n")
    assert "loss: must be one of" in message and "..." in message


def test_model_too_large_for_the_machine_is_refused_with_its_estimate(monkeypatch):
    """Counted on the meta device (no allocation): 64*10^6 + 10^12 + 10^7 weights and 2*10^6 + 10 biases."""
    cfg = parse(TrainConfig, yaml.safe_load(GOOD.replace("widths: [8]", "widths: [1000000, 1000000]")))
    dataset = SimpleNamespace(input_shape=(64,), num_classes=10)
    devices: list[str] = []  # where each Linear put its weight: only shapes on the meta device, no memory
    monkeypatch.setattr(nn.Linear, "reset_parameters", lambda self: devices.append(self.weight.device.type))
    with pytest.raises(ConfigError) as info:
        model_from_config(cfg, dataset)
    monkeypatch.undo()
    assert devices and set(devices) == {"meta"}, devices
    message = str(info.value)
    count = 64 * 10**6 + 10**12 + 10**7 + 2 * 10**6 + 10
    assert f"model 'mlp' with {count:,} parameters (3.64 TiB of float32 weights" in message
    assert "needs about 7.28 TiB of memory, more than this machine's" in message
    small = parse(TrainConfig, yaml.safe_load(GOOD))
    assert sum(p.numel() for p in model_from_config(small, dataset).parameters()) == 64 * 8 + 8 + 8 * 10 + 10
