"""Alone vs side by side: seconds per ResNet-18 training step (batch 16, 96x96, 2 threads),
with the default OpenMP/malloc settings and with personkit's runtime defaults
(personkit/runtime.py). Issue 15, item 5.

Usage: python benchmarks/bench_runtime.py [--steps 6] [--pairs 2]
           [--configs default,personkit,GOMP_SPINCOUNT=10000,...]

Each configuration runs ``--pairs`` times alone, then as two processes started together; a
process reports the median of its steps after one warm-up step. A configuration is
``default`` (no OpenMP/malloc settings), ``personkit`` (personkit/runtime.py's defaults) or
``VAR=VALUE[+VAR=VALUE]``: exactly those environment variables, without personkit's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def worker(steps: int, personkit_defaults: bool) -> None:
    if personkit_defaults:
        from personkit.runtime import apply_defaults

        apply_defaults()
    import timm
    import torch

    model = timm.create_model("resnet18", num_classes=100)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 3, 96, 96), torch.randint(0, 100, (16,))
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t)
    print(json.dumps(sorted(times[1:])[len(times[1:]) // 2]))


TUNABLES = ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "OMP_NUM_THREADS", "GOMP_SPINCOUNT",
            "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def run(n: int, steps: int, personkit_defaults: bool, extra: dict[str, str]) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k not in TUNABLES} | extra
    cmd = [sys.executable, __file__, "--worker", "--steps", str(steps)]
    cmd += ["--personkit"] if personkit_defaults else []
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    return [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--personkit", action="store_true")
    parser.add_argument("--configs", default="default,personkit")
    args = parser.parse_args()
    if args.worker:
        return worker(args.steps, args.personkit)
    print(f"load average before: {os.getloadavg()}")
    rows = {}
    for label in args.configs.split(","):
        flag = label == "personkit"
        extra = dict(kv.split("=", 1) for kv in label.split("+") if "=" in kv)
        alone = [t for _ in range(args.pairs) for t in run(1, args.steps, flag, extra)]
        pair = [t for _ in range(args.pairs) for t in run(2, args.steps, flag, extra)]
        rows[label] = {"alone": alone, "side_by_side": pair,
                       "slowdown": sorted(pair)[len(pair) // 2] / sorted(alone)[len(alone) // 2]}
        print(label, json.dumps(rows[label]), f"load {os.getloadavg()}", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
