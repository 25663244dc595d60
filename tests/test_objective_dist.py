"""Data-parallel Objectives on torch.distributed: two gloo processes on the loopback interface, each holding a
shard of the examples, give the single-process float64 values (sharpness, trace, non-uniformity with every
engine, a landscape slice point) to 1e-10; the single-process sharpness is checked against the dense Hessian.

The two processes are spawned once for the whole module (a few seconds); they run the library with a
``file://`` rendezvous and the ``measure`` CLI the way torchrun starts it (``env://``: RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT), and write their numbers as JSON for the assertions here.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as td
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from flatminima import ConfigError, Objective
from flatminima._threads import torch_threads
from flatminima.curvature import hessian_trace, non_uniformity, sharpness
from flatminima.curvature.sigma import moments
from flatminima.landscape import slice_1d

WORLD, N = 2, 11  # 11 examples: shards of 5 and 6


def _net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(N, 3, generator=g, dtype=torch.float64)
    return x, torch.randn(N, 2, generator=g, dtype=torch.float64)


def _probe(p: int) -> torch.Tensor:
    return torch.randn(p, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def _measure(obj: Objective, landscape: bool = True) -> dict[str, Any]:
    """Every distributed quantity of the issue, as plain numbers (the same calls on one or two processes).

    ``landscape``: include the slice points (landscape evaluation reads tensor data, not loaders).
    """
    v = _probe(obj.num_params)
    direction = _probe(obj.num_params) / 3
    out: dict[str, Any] = {
        "n": obj.n,
        "value": obj.value(),
        "grad": obj.grad().tolist(),
        "hvp": obj.hvp(v).tolist(),
        "ggn_vp": obj.ggn_vp(v).tolist(),
        "sharpness": sharpness(obj, tol=1e-12, max_iter=obj.num_params).value,
        "trace": hessian_trace(obj, matvecs=12, seed=3).value,
        "trace_subsampled": hessian_trace(obj, matvecs=6, seed=3, subsamples=2, subsample_size=7).value,
        "nonuniformity": non_uniformity(obj, method="exact", tol=1e-12, max_iter=obj.num_params).value,
        "nonuniformity_ggn": non_uniformity(obj, method="ggn", tol=1e-12, max_iter=obj.num_params).value,
    }
    if landscape:
        out["slice"] = slice_1d(obj, direction, np.array([-0.5, 0.75])).loss.tolist()
    for engine in ("exact", "exact-vmap", "ggn"):
        out[f"sigma_{engine}"] = moments(obj, engine).combo(v, 0.5, -1.0, 1.0).tolist()
    return out


class _FakeRun:
    """What ``measure`` reads from a run directory (model, data, config), without training one."""

    def __init__(self) -> None:
        self.model = _net()
        self.x, self.y = _data()
        self.config = SimpleNamespace(loss="mse", phases=[SimpleNamespace(lr=0.05, batch_size=None)])

    def objective(self, split: str = "train", params=None, chunk_size=None, bn="eval") -> Objective:
        return Objective(self.model, loss="mse", x=self.x, y=self.y, chunk_size=chunk_size)


def _cli(run_dir: str, *args: str) -> int:
    from flatminima.cli import main
    from flatminima.cli import measure as measure_cli

    measure_cli._load_run = lambda path: _FakeRun()  # type: ignore[assignment]
    try:
        main(["measure", *args, "--run-dir", run_dir])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _worker(rank: int, ports: list[int], init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    # 1. The CLI as torchrun starts it: the process group comes from the environment (env://), one port per
    # command (a group is created and destroyed by each).
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(WORLD), "MASTER_ADDR": "127.0.0.1"})
    commands = {
        "sharpness": ("sharpness", "--tol", "1e-12", "--max-iter", "32"),
        "trace": ("trace", "--matvecs", "12", "--seed", "3"),
        "noise": ("noise",),  # not distributed: refused (exit 2) on every rank
    }
    codes = {}
    for port, (name, args) in zip(ports, commands.items(), strict=True):
        os.environ["MASTER_PORT"] = str(port)
        codes[name] = _cli(out, *args)
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        del os.environ[key]
    # 2. The library with an initialised process group.
    td.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        x, y = _data()
        net = _net()
        sharded = Objective(net, "mse", x, y).shard()
        lo, hi = rank * N // WORLD, (rank + 1) * N // WORLD
        loader = DataLoader(TensorDataset(x[lo:hi], y[lo:hi]), batch_size=2)
        from_loader = Objective(net, "mse", data=loader, dist=True)
        result = {
            "cli": codes,
            "n_local": sharded.n_local,
            "shard": _measure(sharded),
            "loader": _measure(from_loader, landscape=False),
        }
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        td.destroy_process_group()


def _free_ports(k: int) -> list[int]:
    socks = [socket.socket() for _ in range(k)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def single() -> dict[str, Any]:
    x, y = _data()
    with torch_threads(1):
        return _measure(Objective(_net(), "mse", x, y))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory, single) -> tuple[list[dict[str, Any]], Path]:
    """The two processes' results. Forked where the platform allows it, after ``single`` has run here, so
    the children start with torch and torch.func already imported (spawned children spend most of their
    time importing); spawned elsewhere."""
    out = tmp_path_factory.mktemp("dist")
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    args = (_free_ports(3), str(out / "rendezvous"), str(out))
    mp.start_processes(_worker, args=args, nprocs=WORLD, join=True, start_method=method)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)], out


def _close(a: Any, b: Any) -> bool:
    return bool(np.allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12))


def test_single_process_reference_is_the_dense_hessian(single):
    x, y = _data()
    obj = Objective(_net(), "mse", x, y)
    h = torch.autograd.functional.hessian(lambda t: obj.losses_fn(t, x, y).mean(), obj.theta)
    assert single["sharpness"] == pytest.approx(float(torch.linalg.eigvalsh(h)[-1]), rel=1e-10)
    assert _close(single["hvp"], h @ _probe(obj.num_params))


@pytest.mark.parametrize("form", ["shard", "loader"])
def test_two_processes_give_the_single_process_values(two_ranks, single, form):
    ranks, _ = two_ranks
    assert [r["n_local"] for r in ranks] == [5, 6]
    for r in ranks:  # every rank holds the same (global) numbers
        got = r[form]
        assert got["n"] == N
        assert set(got) == set(single) - ({"slice"} if form == "loader" else set())
        for key in got:
            ref = single[key]
            assert _close(got[key], ref), (form, key, got[key], ref)


def test_cli_under_torchrun_environment(two_ranks, single):
    ranks, out = two_ranks
    for r in ranks:
        assert r["cli"] == {"sharpness": 0, "trace": 0, "noise": 2}
    sharp = json.loads((out / "measure-sharpness.json").read_text())  # written once, by rank 0
    assert sharp["options"]["world_size"] == WORLD
    assert sharp["result"]["value"] == pytest.approx(single["sharpness"], rel=1e-10)
    trace = json.loads((out / "measure-trace.json").read_text())["result"]["value"]
    assert trace == pytest.approx(single["trace"], rel=1e-10)
    assert not (out / "measure-noise.json").exists()


def test_dist_argument_errors(tiny_mlp, tiny_data):
    x, y = tiny_data
    with pytest.raises(ConfigError, match="initialised process group"):
        Objective(tiny_mlp, "mse", x, y, dist=True)
    with pytest.raises(ConfigError, match="initialised process group"):
        Objective(tiny_mlp, "mse", x, y).shard()
