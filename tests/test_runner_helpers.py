"""Run functions for the runner tests (module level, so worker processes can import them). No tests here."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any


def quadratic_gd(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Gradient descent on f(x) = a x^2 / 2 from x0: x_t = (1 - lr a)^t x0 (closed form to compare with).

    Reports "diverged" when |1 - lr a| > 1 makes the iterate blow up to inf (the run function's business).
    """
    a, lr, x = config["curv"], config["opt"]["lr"], config["x0"]
    metrics = []
    for step in range(config["steps"]):
        x = x - lr * a * x
        metrics.append({"step": step + 1, "name": "loss", "value": 0.5 * a * x * x})
    loss = 0.5 * a * x * x
    (run_dir / "final.json").write_text(json.dumps({"x": x}))
    status = "finished" if math.isfinite(loss) else "diverged"
    return {"x": x, "loss": loss, "status": status, "pid": os.getpid(), "metrics": metrics}


def slow_square(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Sleep a little, then return the square of config["v"] and a tiny metric trace."""
    time.sleep(config.get("sleep", 0.2))
    v = config["v"]
    (run_dir / "partial.txt").write_text("started")
    return {"square": v * v, "metrics": [{"step": i, "name": "v", "value": v + i} for i in range(3)]}


def fails_on_odd(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Raise for odd config["v"], else return it."""
    if config["v"] % 2:
        raise RuntimeError(f"odd value {config['v']}")
    return {"v": config["v"]}


def thread_count(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Report the torch intra-op thread count and OMP_NUM_THREADS seen by the worker."""
    import torch

    return {"threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"), "pid": os.getpid()}


def bad_return(config: dict[str, Any], run_dir: Path) -> Any:
    """Return a non-dict, an unserialisable value, or a malformed metric row (by config["v"])."""
    return [[1, 2], {"obj": object()}, {"metrics": [{"step": 1.5, "name": "a", "value": 1.0}]}][config["v"]]


def typed_values(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Results in NumPy / torch / pathlib types, which the runner converts to JSON."""
    import numpy as np
    import torch

    return {
        "np_float": np.float64(0.25),
        "np_array": np.arange(3),
        "tensor": torch.tensor([[1.0, 2.0]]),
        "path": run_dir,
        "metrics": [{"step": np.int64(2), "name": "loss", "value": torch.tensor(0.5)}],
    }


def dies_on_one(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Kill the worker process outright for config["v"] == 1 (as a segfault or the OOM killer would)."""
    if config["v"] == 1:
        os._exit(3)
    return {"v": config["v"]}
