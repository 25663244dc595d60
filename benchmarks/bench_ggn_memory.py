# ruff: noqa: E501
"""Peak memory of non_uniformity("ggn") on a small sequence model with K = T x V = 3200 outputs per example.

Run:  .venv/bin/python benchmarks/bench_ggn_memory.py [--n 4 16 64]
Model: one-hot tokens [n, T=32, V=100] -> Linear(100, 32) -> tanh -> Linear(32, 100) per position, outputs
[n, 32, 100] (K = 3200), MSE against random one-hot targets, float32. Each configuration runs in a fresh
subprocess; the peak resident memory (ru_maxrss) is reported with the default guard (memory_budget = 2 GiB:
the K x K blocks are estimated before they are built, examples are grouped, and the exact engine is used when
the blocks alone do not fit) and without it (memory_budget = 1 TiB, the old behaviour).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, warnings
import torch
from torch import nn
import flatminima as fm
n, budget = int(sys.argv[1]), (None if sys.argv[2] == "default" else int(float(sys.argv[2])))
torch.manual_seed(0)
T, V = 32, 100
model = nn.Sequential(nn.Linear(V, 32), nn.Tanh(), nn.Linear(32, V))
x = nn.functional.one_hot(torch.randint(0, V, (n, T)), V).float()
y = nn.functional.one_hot(torch.randint(0, V, (n, T)), V).float()
obj = fm.Objective(model, loss="mse", x=x, y=y)
start = time.perf_counter()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    est = fm.non_uniformity(obj, method="ggn", tol=1e-3, max_iter=30, memory_budget=budget)
print(json.dumps({"n": n, "value": est.value, "method": est.extra["method"], "seconds": time.perf_counter() - start,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "memory": {k: v for k, v in est.extra.get("memory", {}).items()},
                  "warned": [str(w.message)[:90] for w in caught if issubclass(w.category, RuntimeWarning)]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--unguarded-max", type=int, default=16, help="largest n run without the guard")
    args = ap.parse_args()
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    for n in args.n:
        for label, budget in (("guard (2 GiB)", "default"), ("no guard", "1.1e12")):
            if budget != "default" and n > args.unguarded_max:
                print(f"n={n:3d} {label:14s} skipped (would exceed the machine's memory)")
                continue
            out = subprocess.run([sys.executable, "-c", CHILD, str(n), budget], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"n={n:3d} {label:14s} failed (rc {out.returncode}): {out.stderr.strip()[-200:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"n={n:3d} {label:14s} peak {r['peak_mb']:7.0f} MB  engine {r['method']:5s}  s={r['value']:.5g}  "
                  f"{r['seconds']:.1f} s  groups of {r['memory'].get('examples_at_once', '-')}  {r['warned']}")


if __name__ == "__main__":
    main()
