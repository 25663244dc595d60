"""Reading a run directory back: data and model rebuilt from ``config.yaml``, weights from a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..config import TrainConfig, dataset_from_config, load_config, model_from_config
from ..errors import CheckpointError, ConfigError
from ..objective import BNMode, Objective
from .checkpoints import load_checkpoint
from .rundir import read_metrics, read_summary

__all__ = ["LoadedRun", "load_run"]


@dataclass
class LoadedRun:
    """A trained run: ``model`` (with the checkpoint's weights), ``dataset``, ``config``, ``summary``."""

    model: nn.Module
    dataset: Any
    config: TrainConfig
    summary: dict[str, Any]
    path: Path

    def objective(
        self,
        split: str = "train",
        params: str | list[str] | None = None,
        chunk_size: int | None = None,
        bn: BNMode = "eval",
    ) -> Objective:
        """The run's training loss on ``split`` ("train" or "test") as an :class:`Objective`."""
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        data = getattr(self.dataset, split)
        return Objective(
            self.model, loss=self.config.loss, x=data.x, y=data.y, chunk_size=chunk_size, params=params, bn=bn
        )

    def metrics(self) -> list[tuple[int, int, str, float]]:
        """Rows ``(step, phase, name, value)`` of the run's metrics table."""
        return read_metrics(self.path)

    def checkpoints(self) -> list[Path]:
        """The step-N checkpoints of the run, in step order (``final`` not included)."""
        files = (self.path / "checkpoints").glob("step-*.safetensors")
        return sorted(files, key=lambda p: int(p.stem.split("-", 1)[1]))


def load_run(path: str | Path, checkpoint: str = "final") -> LoadedRun:
    """Rebuild data and model of the run at ``path`` and load ``checkpoints/{checkpoint}.safetensors``.

    ``checkpoint``: ``"final"`` or ``"step-N"``. Missing or corrupt run directories, configs or checkpoints
    raise :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"run directory {path} not found")
    config_path = path / "config.yaml"
    if not config_path.is_file():
        raise CheckpointError(f"{path} is not a run directory (no config.yaml)")
    summary = read_summary(path)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise CheckpointError(
            f"cannot rebuild the run at {path} from its config.yaml ({exc}); runs trained from Python "
            "objects are loaded with flatminima.training.load_checkpoint(model, path)"
        ) from None
    dataset = dataset_from_config(config)
    model = model_from_config(config, dataset)
    load_checkpoint(model, path / "checkpoints" / f"{checkpoint}.safetensors")
    model.eval()
    return LoadedRun(model=model, dataset=dataset, config=config, summary=summary, path=path)
