"""Run configurations: validation, one-line errors, YAML round trip, shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flatminima.config import Phase, TrainConfig, dump_config, load_config
from flatminima.errors import ConfigError, UnknownNameError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

BASE = {
    "seed": 3,
    "data": {"name": "digits", "n_train": 100},
    "model": {"name": "mlp", "widths": [16]},
    "loss": "mse",
    "phases": [{"optimizer": "gd", "lr": 0.1, "max_steps": 5}],
}


def _write(tmp_path: Path, data: object, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _error(tmp_path: Path, data: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, data))
    message = str(info.value)
    assert "\n" not in message
    return message


def _with(path: tuple, value: object) -> dict:
    """BASE with one entry replaced (value None deletes it)."""
    import copy

    data = copy.deepcopy(BASE)
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


def test_constructing_in_python_raises_config_error_too():
    with pytest.raises(ConfigError, match=r"^lr: must be > 0 \(got 0\)$"):
        Phase(optimizer="sgd", lr=0, max_steps=1)


def test_valid_config_and_defaults(tmp_path):
    cfg = load_config(_write(tmp_path, BASE))
    assert isinstance(cfg, TrainConfig)
    assert cfg.seed == 3 and cfg.data.n_train == 100 and cfg.model.widths == [16]
    phase = cfg.phases[0]
    assert phase.optimizer == "gd" and phase.batch_size is None and phase.sampling == "without_replacement"
    assert cfg.log_every == 10 and cfg.eval_test and cfg.dtype == "float32" and cfg.checkpoint_every is None


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(_write(tmp_path, BASE))
    again = load_config(_write(tmp_path, dump_config(cfg), "again.yaml"))
    assert again == cfg


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ((("phases", 0, "lr"), -0.1), "config.yaml: phases.0.lr: must be > 0 (got -0.1)"),
        ((("phases", 0, "lrate"), 0.1), "config.yaml: phases.0.lrate: unknown key (allowed: optimizer, lr,"),
        ((("bogus",), 1), "config.yaml: bogus: unknown key (allowed: seed, data, model"),
        ((("model", "depth"), 3), "config.yaml: model.depth: unknown key (allowed: name, widths"),
        ((("data",), None), "config.yaml: data: required field missing"),
        ((("phases", 0, "lr"), None), "config.yaml: phases.0.lr: required field missing"),
        ((("loss",), "hinge"), "config.yaml: loss: must be one of 'mse' or 'cross_entropy' (got 'hinge')"),
        ((("phases",), []), "config.yaml: phases: must not be empty"),
        ((("phases", 0, "batch_size"), 0), "config.yaml: phases.0.batch_size: must be >= 1 (got 0)"),
        ((("phases", 0, "max_steps"), None), "phases.0: set max_steps or max_epochs"),
        ((("phases", 0, "batch_size"), 10), "phases.0: gd is full-batch: remove batch_size"),
        ((("phases", 0, "momentum"), 1.5), "phases.0.momentum: must be < 1"),
        ((("phases", 0, "sampling"), "random"), "phases.0.sampling: must be one of"),
        ((("log_every",), "often"), "log_every: input should be a valid integer"),
    ],
)
def test_bad_configs_give_one_readable_line(tmp_path, change, expected):
    message = _error(tmp_path, _with(*change))
    assert message.startswith(str(tmp_path / "config.yaml")[: -len("config.yaml")])
    assert expected in message


def test_several_problems_are_counted_in_the_same_line(tmp_path):
    data = _with(("phases", 0, "lr"), -1.0)
    data["bogus"] = 1
    message = _error(tmp_path, data)
    assert "(and 1 more problem)" in message


def test_unknown_optimizer_lists_the_choices(tmp_path):
    message = _error(tmp_path, _with(("phases", 0, "optimizer"), "adamw"))
    assert "phases.0.optimizer: unknown optimizer 'adamw'; choose one of:" in message
    for name in ("adam", "gd", "lbfgs", "sgd"):
        assert name in message
    with pytest.raises(ConfigError, match="optimizer: unknown optimizer 'adamw'"):
        Phase(optimizer="adamw", lr=0.1, max_steps=1)
    with pytest.raises(UnknownNameError):
        from flatminima.training.optimizers import check_optimizer_name

        check_optimizer_name("adamw")


def test_optimizer_names_are_normalized():
    assert Phase(optimizer="SGD", lr=0.1, max_steps=1).optimizer == "sgd"
    pytest.importorskip("flatminima.optim")
    assert Phase(optimizer="Entropy_SGD", lr=0.1, max_steps=1).optimizer == "entropy-sgd"


def test_malformed_yaml_missing_file_and_wrong_top_level(tmp_path):
    message = _error(tmp_path, "seed: 0\nphases: [\n  - {optimizer: gd\n")
    assert "config.yaml: malformed YAML at line" in message
    message = _error(tmp_path, "- just\n- a list\n")
    assert "expected a mapping" in message
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", ["gd_digits.yaml", "escape_digits.yaml"])
def test_shipped_examples_are_valid(name):
    cfg = load_config(EXAMPLES / name)
    assert cfg.data.name == "digits" and cfg.loss == "mse"


def test_escape_example_is_the_wu_protocol():
    """GD lr 0.1 until loss < 1e-4, then SGD lr 0.1 with B = 4 (Wu, Ma & E 2018, Table 3)."""
    gd, sgd = load_config(EXAMPLES / "escape_digits.yaml").phases
    assert (gd.optimizer, gd.lr, gd.stop_loss, gd.batch_size) == ("gd", 0.1, 1e-4, None)
    assert (sgd.optimizer, sgd.lr, sgd.batch_size, sgd.stop_loss) == ("sgd", 0.1, 4, None)
