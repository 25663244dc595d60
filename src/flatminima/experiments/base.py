"""Reproducible experiments: the base type, the result record and the registry.

An experiment reproduces one result of a paper (a figure or table) and states the claim it checks. Subclass
:class:`Experiment`, set the class attributes ``name``, ``title``, ``paper`` (citation with figure/table),
``claim`` (the expected relation in words) and optionally ``scales``, implement :meth:`Experiment.compute`,
and decorate the class with :func:`register` in a module ``experiments/<paper>_<topic>.py`` (imported
automatically by the package)::

    @register
    class WuSharpnessVsLr(Experiment):
        name = "wu_sharpness_lr"
        title = "GD sharpness is bounded by 2/lr"
        paper = "Wu, Ma & E 2018, Fig. 3"
        claim = "sharpness <= 2/lr for every learning rate"

        def compute(self, ctx: RunContext) -> Findings:
            store = ctx.run_sweep(Sweep(base, grid), my_run_fn)
            rows = [ComparisonRow("sharpness at lr=0.1", ours, 20.0, "<=", ours <= 20.0)]
            return Findings(rows=rows, figures=["sharpness.png"], config={"base": base, "grid": grid})

:meth:`Experiment.run` validates the scale, times the work, fills in versions and ``passed`` (all rows with a
verdict hold; None when no row has one) and saves ``out_dir/result.json`` atomically.

Scales: ``smoke`` (seconds, for CI), ``default`` (minutes on a laptop), ``paper`` (the paper's setting).
The ``paper`` scale may need data files that are not embedded (MNIST, CIFAR-10); when they are missing the
experiment must raise :class:`~flatminima.errors.DataNotFoundError` naming the files expected and where (the
data loaders do this), before any long work.
"""

from __future__ import annotations

import json
import platform
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from .._io import atomic_write_text
from .._threads import torch_threads
from .._validate import short
from ..errors import ConfigError, DataNotFoundError, unknown
from ..runner.outcome import to_jsonable

SCALES = ("smoke", "default", "paper")
RESULT_FILE = "result.json"


@dataclass
class ComparisonRow:
    """One quantity compared with the paper: ``ours`` vs ``paper`` under ``relation``.

    ``relation`` is the expected relation in words or symbols ("<=", "≈ ±10%", "decreasing in lr");
    ``holds`` is the verdict (None when there is nothing to check, e.g. a qualitative figure).
    """

    quantity: str
    ours: Any
    paper: Any
    relation: str
    holds: bool | None = None


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass
class ExperimentResult:
    """Everything the report needs about one executed experiment; saved as ``out_dir/result.json``.

    ``figures`` are PNG paths relative to ``out_dir``. ``scale`` is an addition to the issue's field list (the
    report shows it). ``passed`` is True when every row with a verdict holds, False when one fails, None when
    no row has a verdict. ``data`` maps each data set the paper used to the one we used where they differ
    (``{"MNIST": "fashion-mnist"}``: "ours: fashion-mnist, paper: MNIST"); :meth:`RunContext.dataset_name`.
    """

    name: str
    title: str
    paper: str
    claim: str
    rows: list[ComparisonRow] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    passed: bool | None = None
    notes: str = ""
    scale: str = ""
    data: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def data_note(self) -> str:
        """ "ours: fashion-mnist, paper: MNIST" for each substituted data set ("" when none was)."""
        return "; ".join(f"ours: {ours}, paper: {paper}" for paper, ours in self.data.items())

    def cells_note(self) -> str:
        """ "lrs: ran 0.5, 1, 5 of 0.01, 0.05, 0.1, 0.5, 1, 5" for each grid axis run in part
        (``config["cells"]``, :meth:`RunContext.pick`; "" when every cell ran)."""
        parts = []
        for axis, cells in (self.config.get("cells") or {}).items():
            ran, grid = list(cells.get("run", [])), list(cells.get("grid", []))
            if ran != grid:
                parts.append(f"{axis}: ran {', '.join(map(_fmt, ran))} of {', '.join(map(_fmt, grid))}")
        return "; ".join(parts)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentResult:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["rows"] = [ComparisonRow(**row) for row in data.get("rows", [])]
        return cls(**values)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``out_dir/result.json`` atomically; return its path."""
        # NaN is kept (Python's json reads it back); unknown objects are an error, not silently stringified.
        text = json.dumps(self.to_dict(), indent=2, default=to_jsonable)
        return atomic_write_text(Path(out_dir) / RESULT_FILE, text + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ExperimentResult:
        """Load ``path`` (a result.json, or the directory holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / RESULT_FILE
        if not path.is_file():
            raise DataNotFoundError(f"no experiment result at {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not a valid experiment result: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("rows", []), list):
            raise ConfigError(
                f"{path} is not a valid experiment result: expected a JSON object with a list of rows, "
                f"got {short(data)}"
            )
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{path} is not a valid experiment result: {exc}") from None


def verdict(rows: list[ComparisonRow]) -> bool | None:
    """True if every row with a verdict holds, False if one does not, None if no row has a verdict."""
    checked = [bool(r.holds) for r in rows if r.holds is not None]
    return all(checked) if checked else None


def package_versions() -> dict[str, str]:
    """Versions of Python, the platform and the packages a result depends on."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("flatminima", "torch", "numpy", "scipy", "scikit-learn", "matplotlib"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


@dataclass
class RunContext:
    """What an experiment's :meth:`Experiment.compute` gets: scale, output directory, executor and seed, and
    the user's choices of data set and grid cells (``flatminima reproduce --data``, ``--seeds``, ``--lrs``,
    ``--only``), which the experiment applies through :meth:`dataset_name` and :meth:`pick`."""

    scale: str
    out_dir: Path
    workers: int = 1
    cluster: Any = None
    seed: int = 0
    progress: bool | None = None
    data: str | None = None
    only: dict[str, list[Any]] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    def run_sweep(self, sweep: Any, fn: Any, subdir: str | None = None) -> Any:
        """:func:`flatminima.runner.run_sweep` into ``out_dir`` (or ``out_dir/subdir``) with this executor."""
        from ..runner import run_sweep

        out = self.out_dir / subdir if subdir else self.out_dir
        return run_sweep(sweep, fn, out, workers=self.workers, cluster=self.cluster, progress=self.progress)

    def dataset_name(self, paper: str, label: str | None = None) -> str:
        """The data set to load where the paper used ``paper`` (a ``fm.data.load`` name): ``paper`` itself,
        or the ``--data`` substitute at paper scale. A substitution is recorded (result ``data``), so tables
        and reports say "ours: fashion-mnist, paper: MNIST"; ``label`` is the paper's name for it."""
        if self.data is None or self.scale != "paper" or self.data == paper:
            return paper
        self.record.setdefault("data", {})[label or paper] = self.data
        return self.data

    def pick(self, axis: str, values: Sequence[Any]) -> list[Any]:
        """The cells of grid axis ``axis`` to run: all of ``values``, or those the user asked for (in the
        grid's order). Asking for a value the grid does not have is a :class:`ConfigError`. What was run is
        recorded (result ``config["cells"]``) so the table can say which cells were run."""
        wanted = self.only.get(axis)
        if wanted is None:
            return list(values)
        missing = [w for w in wanted if not any(_same(w, v) for v in values)]
        if missing:
            raise ConfigError(
                f"--{axis}: {', '.join(map(str, missing))} not in this experiment's {self.scale} grid "
                f"({', '.join(map(str, values))})"
            )
        chosen = [v for v in values if any(_same(w, v) for w in wanted)]
        self.record.setdefault("cells", {})[axis] = {"run": chosen, "grid": list(values)}
        return chosen


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(b)))
    return str(a) == str(b)


@dataclass
class Findings:
    """What :meth:`Experiment.compute` returns; :meth:`Experiment.run` adds the bookkeeping."""

    rows: list[ComparisonRow]
    figures: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    notes: str = ""


class Experiment(ABC):
    """Base class of reproducible experiments (see the module docstring)."""

    name: str = ""
    title: str = ""
    paper: str = ""
    claim: str = ""
    scales: tuple[str, ...] = SCALES
    #: grid axes the user may restrict with ``reproduce --only AXIS=v1,v2`` (``--seeds`` / ``--lrs`` are
    #: shorthands for the axes ``seeds`` / ``lrs``); see :meth:`RunContext.pick`.
    axes: tuple[str, ...] = ()

    @abstractmethod
    def compute(self, ctx: RunContext) -> Findings:
        """Run the experiment at ``ctx.scale`` and compare with the paper."""

    def run(
        self,
        scale: str,
        out_dir: str | Path,
        workers: int = 1,
        cluster: Any = None,
        seed: int = 0,
        progress: bool | None = None,
        data: str | None = None,
        only: dict[str, list[Any]] | None = None,
    ) -> ExperimentResult:
        """Validate ``scale``, run :meth:`compute`, save and return the :class:`ExperimentResult`.

        ``data``: a data set to use instead of the paper's at paper scale (a ``fm.data.load`` name);
        ``only``: grid cells to run, ``{axis: [values]}`` for axes in :attr:`axes`.

        The smoke and default scales run with one torch thread (their nets are too small to gain from
        intra-op parallelism and a busy machine makes 2 threads several times slower; sweeps parallelise over
        runs instead); the paper scale keeps torch's setting.
        """
        if scale not in self.scales:
            raise unknown("scale", scale, self.scales)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive integer, got {workers!r}")
        only = dict(only or {})
        bad_axes = sorted(set(only) - set(self.axes))
        if bad_axes:
            choices = ", ".join(self.axes) or "none"
            raise ConfigError(f"{self.name} has no grid axis {', '.join(bad_axes)} (axes: {choices})")
        if data is not None:
            from ..data import available as data_sets

            if scale != "paper":
                raise ConfigError("--data substitutes the paper's data set: it applies at --scale paper only")
            if data not in data_sets():
                raise unknown("dataset", data, data_sets())
        ctx = RunContext(scale, Path(out_dir), workers, cluster, seed, progress, data, only)
        out = ctx.out_dir
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        try:
            with torch_threads(None if scale == "paper" else 1):
                findings = self.compute(ctx)
        except BaseException:
            if created and not any(out.iterdir()):  # leave nothing behind for input errors (missing data)
                out.rmdir()
            raise
        recorded = {k: v for k, v in ctx.record.items() if k != "data"}  # cells run; "data" has its field
        result = ExperimentResult(
            name=self.name,
            title=self.title,
            paper=self.paper,
            claim=self.claim,
            rows=list(findings.rows),
            figures=[str(f) for f in findings.figures],
            config={"scale": scale, **findings.config, **recorded},
            seed=seed,
            seconds=time.perf_counter() - t0,
            versions=package_versions(),
            passed=verdict(list(findings.rows)),
            notes=findings.notes,
            scale=scale,
            data=dict(ctx.record.get("data", {})),
        )
        result.save(out)
        return result


REGISTRY: dict[str, Experiment] = {}
E = TypeVar("E", Experiment, type[Experiment])


def register(exp: E) -> E:
    """Register an experiment (an instance, or a class, instantiated without arguments); usable as decorator.

    Registering a second, different experiment under a taken name is a ConfigError; re-registering the same
    class (module reload) replaces the entry.
    """
    instance = exp() if isinstance(exp, type) else exp
    for attr in ("name", "title", "paper", "claim"):
        if not isinstance(getattr(instance, attr, None), str) or not getattr(instance, attr):
            raise ConfigError(f"experiment {instance!r} needs a non-empty string attribute {attr!r}")
    bad = [s for s in instance.scales if s not in SCALES]
    if bad:
        raise ConfigError(f"experiment {instance.name!r}: unknown scales {bad}; choose from {SCALES}")
    taken = REGISTRY.get(instance.name)
    if taken is not None and type(taken).__qualname__ != type(instance).__qualname__:
        raise ConfigError(
            f"experiment name {instance.name!r} is already registered by {type(taken).__name__}"
        )
    REGISTRY[instance.name] = instance
    return exp


def unregister(name: str) -> None:
    """Remove an experiment from the registry (tests)."""
    REGISTRY.pop(name, None)


def _load_all() -> None:
    """Import every experiment module of the package (once), so their ``@register`` calls fill REGISTRY."""
    from . import _import_experiment_modules

    _import_experiment_modules()


def get(name: str) -> Experiment:
    """The registered experiment ``name`` (UnknownNameError listing the available ones)."""
    _load_all()
    try:
        return REGISTRY[name]
    except KeyError:
        raise unknown("experiment", name, available()) from None


def available() -> list[str]:
    """Names of the registered experiments, sorted."""
    _load_all()
    return sorted(REGISTRY)
