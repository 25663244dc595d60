"""The branching protocol of Theory II (Sec. 4, Figs. 3-4): tests of the "basin" picture of SGD minima.

A main trajectory is trained from the initial model. At each stage epoch s (e.g. 0, 10, 50, 200) with weights
P = w_main(s), two branches are trained for ``branch_epochs``: a parallel run from P (another seed: other
minibatch order) and a run from P perturbed by Gaussian noise, each parameter tensor W receiving N(0, (c *
std(W))^2) i.e. noise ``c`` times that layer's weight standard deviation (c = 0.25 in Fig. 4; a parameter
tensor with zero spread, such as a freshly initialized bias, gets no noise). Every branch is averaged epoch by
epoch with the main trajectory, w_avg(t) = (w_main(s + t) + w_branch(t)) / 2, and the error of the averaged
model is recorded: in one basin the average has about the error of its end points; across basins it rises. The
trajectories (all or one layer) feed :func:`trajectory_mds`.

``train_fn(model, epochs, seed) -> [flat weights after epoch 0..epochs]`` (all parameters) trains in place;
the default is :func:`sgd_train_fn`. ``error_fn(model) -> float`` is the error to record.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .._progress import progress_bar
from ..errors import ConfigError
from .trajectory import TrainFn, load_flat

__all__ = ["Branch", "BranchingResult", "branching", "perturb"]


def perturb(model: nn.Module, scale: float, seed: int) -> nn.Module:
    """A copy of ``model`` with every parameter W += N(0, (scale * std(W))^2) (seeded)."""
    if scale < 0:
        raise ConfigError(f"noise scale must be non-negative, got {scale}")
    g = torch.Generator().manual_seed(seed)
    out = copy.deepcopy(model)
    with torch.no_grad():
        for p in out.parameters():
            std = float(p.detach().double().std()) if p.numel() > 1 else 0.0
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.device, p.dtype)
            p.add_(noise * (scale * std))
    return out


@dataclass
class Branch:
    """One branch from stage epoch ``stage``: ``kind`` ``"parallel"`` or ``"perturbed"``, its trajectory ``[T
    + 1, p]``, its errors and the errors of its epoch-by-epoch average with the main trajectory."""

    stage: int
    kind: str
    trajectory: Tensor
    errors: list[float]
    averaged_errors: list[float]


@dataclass
class BranchingResult:
    """Main trajectory ``[E + 1, p]`` with its errors, and the branches."""

    main: Tensor
    main_errors: list[float]
    branches: list[Branch] = field(default_factory=list)

    def stacked(self) -> tuple[Tensor, list[str], list[float]]:
        """All recorded weights (main, then branches) with a label per row and its error, for MDS plots."""
        rows, labels, errors = [self.main], ["main"] * len(self.main), list(self.main_errors)
        for b in self.branches:
            rows.append(b.trajectory)
            labels += [f"{b.kind}@{b.stage}"] * len(b.trajectory)
            errors += b.errors
        return torch.cat(rows), labels, errors


def branching(
    model: nn.Module,
    train_fn: TrainFn,
    error_fn: Callable[[nn.Module], float],
    stages: Sequence[int] = (0, 10, 50, 200),
    branch_epochs: int = 10,
    noise: float = 0.25,
    seed: int = 0,
    runs: int = 1,
) -> BranchingResult:
    """Run the branching protocol (module docstring) and return every trajectory with its errors.

    ``runs`` branches of each kind per stage (Theory II Fig. 3 uses 4 + 4 with noise 0.01 and stages every 10
    epochs, the main trajectory playing trajectory 1; Fig. 4 uses 1 + 1 with noise 0.25 at epochs 0, 10, 50,
    200).
    """
    stages = sorted(int(s) for s in stages)
    if not stages or stages[0] < 0 or branch_epochs < 1:
        raise ConfigError(f"need non-negative stages and branch_epochs >= 1, got {stages}, {branch_epochs}")
    probe = copy.deepcopy(model)

    def error_at(theta: Tensor) -> float:
        return float(error_fn(load_flat(probe, theta)))

    total = stages[-1] + branch_epochs
    main = torch.stack(train_fn(copy.deepcopy(model), total, seed))
    if len(main) < total + 1:
        raise ConfigError(f"main trajectory diverged after {len(main) - 1} of {total} epochs")
    result = BranchingResult(main=main, main_errors=[error_at(w) for w in main])
    if runs < 1:
        raise ConfigError(f"runs must be positive, got {runs}")
    with progress_bar(2 * runs * len(stages), "branching") as bar:
        for i, s in enumerate(stages):
            start = load_flat(copy.deepcopy(model), main[s])
            starts = [("parallel", copy.deepcopy(start)) for _ in range(runs)]
            starts += [("perturbed", perturb(start, noise, seed + 7919 * (i + 1) + r)) for r in range(runs)]
            for j, (kind, net) in enumerate(starts):
                traj = torch.stack(train_fn(net, branch_epochs, seed + 1000 * (i + 1) + j + 1))
                averaged = [error_at(0.5 * (main[s + t] + traj[t])) for t in range(len(traj))]
                result.branches.append(Branch(s, kind, traj, [error_at(w) for w in traj], averaged))
                bar.advance()
    return result
