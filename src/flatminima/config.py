"""Run configurations (pydantic v2, unknown keys rejected everywhere) and their YAML files.

A run is ``TrainConfig``: the data, the model, the loss and a list of training *phases* (GD, SGD, Adam,
L-BFGS or any ``flatminima.optim`` optimizer, each with its own stopping rules). ``load_config`` reads a YAML
file; every problem (malformed YAML, unknown key, bad value, missing field) becomes a :class:`ConfigError`
with one readable line such as ``config.yaml: phases.0.lr: must be > 0``.

Decisions where the papers are silent:

* ``data.targets`` defaults to one-hot rows for ``loss: mse`` (Wu, Ma & E 2018, Sec. 4) and to class indices
  for ``loss: cross_entropy``.
* ``data.seed`` defaults to the run's ``seed`` (subset choice, label noise), so one number fixes a run.
* A phase must bound its length with ``max_steps`` or ``max_epochs``: ``stop_loss`` alone may never be
  reached.

Hostile or mistaken files: the YAML is read with a safe loader that refuses duplicated keys, files over
``MAX_CONFIG_BYTES`` and documents that expand (through anchors and aliases) to more than ``MAX_CONFIG_NODES``
nodes, before anything is validated; a rejected value is quoted at most ~80 characters long
(:func:`flatminima._validate.short`). Every float setting must be finite (``lr: .inf`` is an error), seeds
lie in ``[0, 2**63 - 1]``, and :func:`model_from_config` estimates the model's parameter memory (the model
built on the ``meta`` device, which allocates nothing) and refuses a model whose weights and gradients would
not fit in this machine's memory.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._validate import SEED_MAX, check_memory, check_seed, format_bytes, short
from .errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from .training import TrainResult

__all__ = [
    "DataConfig",
    "ModelConfig",
    "Phase",
    "TrainConfig",
    "dataset_from_config",
    "dump_config",
    "load_config",
    "model_from_config",
    "parse",
    "train_from_config",
]

Sampling = Literal["without_replacement", "with_replacement"]
MAX_CONFIG_BYTES = 2**20  # a run configuration is a few hundred bytes
MAX_CONFIG_NODES = 100_000  # nodes after expanding aliases (a billion-laughs file has ~10^9)


class _Strict(BaseModel):
    """Unknown keys rejected; constructing with bad values raises a one-line :class:`ConfigError`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            loc, text = _locate(exc, type(self))
            raise _FieldError(loc, text) from None


class _FieldError(ConfigError):
    """A :class:`ConfigError` that remembers where it happened, so an enclosing model can prefix the path."""

    def __init__(self, loc: str, text: str) -> None:
        super().__init__(f"{loc}: {text}" if loc else text)
        self.loc, self.text = loc, text


def _seed_value(value: Any) -> Any:
    """A float seed beyond the bounds (YAML ``1.0e+23``) gets the bounds' message, not an int-parsing one."""
    if isinstance(value, float) and not 0 <= value <= SEED_MAX:
        raise ValueError(f"must be an integer in [0, {SEED_MAX}] (got {short(value)})")
    return value


class Phase(_Strict):
    """One stretch of training with one optimizer.

    ``optimizer``: ``gd`` (full-batch SGD), ``sgd``, ``adam``, ``lbfgs`` (full batch) or any name of
    ``flatminima.optim`` (``sgdl``, ``sgld``, ``entropy-sgd``, ...). ``batch_size`` ``None`` means the full
    training set. ``sampling``: ``without_replacement`` (epochs of a fresh random permutation, every minibatch
    exactly ``batch_size`` examples) or ``with_replacement`` (each minibatch i.i.d. uniform draws).
    ``options`` are extra keyword arguments of the optimizer. The phase ends at the first of ``max_steps``
    optimizer steps, ``max_epochs`` passes over the data, or training loss (full training set, checked at log
    points) below ``stop_loss``.
    """

    optimizer: str
    lr: float = Field(gt=0)
    batch_size: int | None = Field(default=None, ge=1)
    sampling: Sampling = "without_replacement"
    momentum: float = Field(default=0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)
    max_steps: int | None = Field(default=None, ge=1)
    max_epochs: float | None = Field(default=None, gt=0)
    stop_loss: float | None = Field(default=None, gt=0)
    name: str | None = None

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        from .training.optimizers import check_optimizer_name

        return check_optimizer_name(value)

    @model_validator(mode="after")
    def _consistent(self) -> Phase:
        if self.max_steps is None and self.max_epochs is None:
            raise ValueError("set max_steps or max_epochs (stop_loss alone may never be reached)")
        if self.optimizer in ("gd", "lbfgs") and self.batch_size is not None:
            raise ValueError(f"{self.optimizer} is full-batch: remove batch_size (use sgd for minibatches)")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        if self.optimizer in ("adam", "lbfgs") and (self.momentum or self.nesterov):
            raise ValueError(f"{self.optimizer} takes no momentum; pass its own settings in options")
        return self


class DataConfig(_Strict):
    """Arguments of ``flatminima.data.load`` (see there); ``options`` holds source-specific ones."""

    name: str
    n_train: int | None = Field(default=None, ge=1)
    classes: list[int] | None = None
    random_labels: float = Field(default=0.0, ge=0, le=1)
    extra_random: int = Field(default=0, ge=0)
    targets: Literal["onehot", "index"] | None = None
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    root: str | None = None
    verify: bool = True  # False: accept files that do not match the official checksums (recorded)
    options: dict[str, Any] = Field(default_factory=dict)

    _seed = field_validator("seed", mode="before")(_seed_value)


class ModelConfig(_Strict):
    """Arguments of ``flatminima.models.build``; ``options`` holds model-specific ones (e.g. ``channels``)."""

    name: str
    widths: list[int] | None = None
    activation: str = "relu"
    init: str = "default"
    options: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(_Strict):
    """A whole run: ``fm.train_from_config(load_config("run.yaml"), out="runs/x")``."""

    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    data: DataConfig
    model: ModelConfig
    loss: Literal["mse", "cross_entropy"] = "mse"
    phases: list[Phase] = Field(min_length=1)
    log_every: int = Field(default=10, ge=1)
    checkpoint_every: int | None = Field(default=None, ge=1)
    resume_every: int | None = Field(default=None, ge=1)
    eval_test: bool = True
    dtype: Literal["float32", "float64"] = "float32"
    diverge_factor: float = Field(default=1e6, gt=1)

    _seed = field_validator("seed", mode="before")(_seed_value)


# ---------------------------------------------------------------------------------------------- validation
def _field_type(model: Any, loc: tuple[Any, ...]) -> Any:
    """The annotation reached by following ``loc`` from ``model`` (None where it cannot be followed)."""
    current: Any = model
    for part in loc:
        while True:  # unwrap Optional / list
            origin = typing.get_origin(current)
            if origin in (typing.Union, types.UnionType):
                args = [a for a in typing.get_args(current) if a is not type(None)]
                current = args[0] if len(args) == 1 else None
            elif origin is list and isinstance(part, int):
                current = typing.get_args(current)[0]
                break
            else:
                break
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return None
    return current


def _message(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    """One readable phrase for one pydantic error."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        parent = _field_type(model, tuple(error["loc"][:-1]))
        allowed = f" (allowed: {', '.join(parent.model_fields)})" if isinstance(parent, type) else ""
        return f"unknown key{allowed}"
    if kind == "missing":
        return "required field missing"
    comparisons = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in comparisons:
        value = next(iter(ctx.values()))
        bound = value if isinstance(value, int) else f"{value:g}" if isinstance(value, float) else value
        return f"must be {comparisons[kind]} {bound} (got {short(error.get('input'))})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {short(error.get('input'))})"
    if kind == "finite_number":
        return f"must be a finite number (got {short(error.get('input'))})"
    if kind == "too_short":
        return "must not be empty"
    text = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        text = text.removeprefix(prefix)
    if kind.endswith(("_type", "_parsing", "_size")):
        text = f"{text[:1].lower()}{text[1:]} (got {short(error.get('input'))})"
    return text


def parse(model: type[BaseModel], data: Any, where: str = "", at: str = "") -> Any:
    """Validate ``data`` as ``model``; failure: one :class:`ConfigError` line ``where: at.field: problem``.

    ``where`` names the source (a file), ``at`` the position of ``data`` inside it (e.g. ``phases.0``).
    """
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, model, where, at)) from None


def _locate(exc: ValidationError, model: type[BaseModel]) -> tuple[str, str]:
    """(dotted location, problem) of the first error; nested models' errors keep their full path."""
    errors = exc.errors()
    first = errors[0]
    parts = [str(p) for p in first["loc"]]
    inner = (first.get("ctx") or {}).get("error")
    if isinstance(inner, _FieldError):
        parts.append(inner.loc)
        text = inner.text
    else:
        text = _message(first, model)
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    return ".".join(p for p in parts if p), text + more


def _one_line(exc: ValidationError, model: type[BaseModel], where: str = "", at: str = "") -> str:
    loc, text = _locate(exc, model)
    head = ": ".join(p for p in (where, ".".join(p for p in (at, loc) if p)) if p)
    return f"{head}: {text}" if head else text


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML forbids it; PyYAML keeps the
    last silently). Merge keys (``<<: *base``) may still be overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base constructor reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicated key {short(key)}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Number of nodes of the document with every alias expanded, counted without expanding (memoized on the
    node graph); stops counting above ``limit``. ConfigError for an alias inside its own anchor."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"line {node.start_mark.line + 1}: an alias refers to a value that contains it")
        total = 1
        if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
            active.add(key)
            children = (
                node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
            )
            for child in children:
                total += size(child)
                if total > limit:
                    break
            active.discard(key)
        sizes[key] = min(total, limit + 1)
        return sizes[key]

    return size(root)


def read_yaml(path: str | Path) -> Any:
    """The YAML document at ``path``, read safely (see the module docstring); ConfigError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {format_bytes(path.stat().st_size)} is too large for a run configuration "
            f"(at most {format_bytes(MAX_CONFIG_BYTES)})"
        )
    try:
        loader = _Loader(path.read_text())
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            try:
                nodes = _expanded_size(node, MAX_CONFIG_NODES)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
            if nodes > MAX_CONFIG_NODES:
                raise ConfigError(
                    f"{path}: the document expands (through anchors and aliases) to more than "
                    f"{MAX_CONFIG_NODES} values; a run configuration needs a few dozen"
                )
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None


def load_config(path: str | Path) -> TrainConfig:
    """Read (:func:`read_yaml`) and validate a YAML run configuration."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top, got {type(raw).__name__}")
    return parse(TrainConfig, raw, str(path))


def dump_config(config: TrainConfig | Mapping[str, Any]) -> str:
    """YAML text of a (resolved) configuration, keys in declaration order."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
    return yaml.safe_dump(data, sort_keys=False)


# ---------------------------------------------------------------------------------------------- building
def dataset_from_config(config: TrainConfig) -> Any:
    """``flatminima.data.load`` with the run's data settings (targets follow the loss unless given)."""
    from . import data as fm_data

    d = config.data
    targets = d.targets or ("onehot" if config.loss == "mse" else "index")
    kwargs: dict[str, Any] = {
        "n_train": d.n_train,
        "classes": d.classes,
        "random_labels": d.random_labels,
        "extra_random": d.extra_random,
        "targets": targets,
        "seed": config.seed if d.seed is None else d.seed,
        "root": d.root,
        "verify": d.verify,
        **d.options,
    }
    return fm_data.load(d.name, **kwargs)


def model_from_config(config: TrainConfig, dataset: Any) -> nn.Module:
    """``flatminima.models.build`` for the run's data, seeded with the run's seed, in the run's dtype."""
    from . import models as fm_models

    m = config.model
    kwargs = dict(m.options)
    if m.widths is not None:
        kwargs["widths"] = list(m.widths)

    def build() -> nn.Module:
        try:
            return fm_models.build(
                m.name,
                input_shape=tuple(dataset.input_shape),
                num_classes=dataset.num_classes,
                activation=m.activation,
                init=m.init,
                seed=config.seed,
                **kwargs,
            )
        except TypeError as exc:
            raise ConfigError(f"model: {exc}") from None

    _check_model_memory(build, m.name, config.dtype)
    return build().to(getattr(torch, config.dtype))


def _check_model_memory(build: Any, name: str, dtype: str) -> None:
    """Refuse a model whose weights and gradients (2 x parameters x bytes) exceed this machine's memory.

    The model is built on the ``meta`` device (shapes only, no memory, milliseconds), so the count is exact.
    A model that cannot be built there is not estimated (the real build reports its own problems).
    """
    try:
        with torch.device("meta"):
            meta = build()
    except ConfigError:
        raise
    except Exception:  # an operation without a meta kernel: no estimate
        return
    count = sum(p.numel() for p in meta.parameters())
    weights = count * torch.empty((), dtype=getattr(torch, dtype)).element_size()
    check_memory(
        f"model {name!r} with {count:,} parameters ({format_bytes(weights)} of {dtype} weights, as much "
        "again for gradients)",
        2 * weights,
        hint="use smaller widths",
    )


def train_from_config(
    config: TrainConfig | Mapping[str, Any] | str | Path,
    out: str | Path | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    probes: tuple[Any, ...] = (),
    overwrite: bool = False,
) -> TrainResult:
    """Build data and model from ``config`` and train them (``fm.train``); ``seed`` overrides ``config.seed``.

    Everything that can be checked (config, data files, names, batch sizes) is checked before the run
    directory is created, so bad input never leaves a half-written run behind.
    """
    from .training import train

    if isinstance(config, (str, Path)):
        config = load_config(config)
    config = parse(TrainConfig, config, "config")
    if seed is not None:
        config = config.model_copy(update={"seed": check_seed(seed)})
    dataset = dataset_from_config(config)
    model = model_from_config(config, dataset)
    return train(
        model,
        dataset,
        config.phases,
        loss=config.loss,
        seed=config.seed,
        out=out,
        log_every=config.log_every,
        eval_test=config.eval_test,
        probes=probes,
        checkpoint_every=config.checkpoint_every,
        progress=progress,
        diverge_factor=config.diverge_factor,
        config=config,
        resume_every=config.resume_every,
        overwrite=overwrite,
    )
