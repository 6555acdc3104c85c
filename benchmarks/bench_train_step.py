"""Where a demo training step's time goes, and what makes it faster (issue 15, item 6).

Builds the demo's trainer (personkit/configs/demo.yaml) on a synthetic world and times
``--steps`` interleaved steps per variant, split into data (next batch), forward, loss,
backward and optimizer. Variants run one after another in one process, each on a freshly
built trainer with the same seed, and are reported as the median seconds per step of each
dataset with the ratio to the first variant of the same run.

Usage:
    personkit synth --preset small --out runs/demo/data     # or reuse the demo's world
    python benchmarks/bench_train_step.py runs/demo/data [--steps 30] [--variants before,default]

Variants (``VARIANTS``): ``before`` (NCHW, foreach Adam: the step before issue 15),
``default`` (personkit's defaults: channels_last, fused Adam), ``cl`` and ``fused`` (one of
the two), ``loader`` (defaults plus one DataLoader process), ``compile`` (torch.compile,
inductor) and ``t1`` (one torch thread). A step's ``total`` is the sum of its phases; the
mix of datasets follows the demo's 3 : 3 : 4 schedule.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from personkit.runtime import apply_defaults

apply_defaults()

import torch  # noqa: E402

from personkit.config import load_config  # noqa: E402
from personkit.demo import DEFAULT_CONFIG  # noqa: E402
from personkit.engine.build import build_trainer  # noqa: E402

PHASES = ("data", "forward", "loss", "backward", "optimizer")


def timed_step(trainer, name: str) -> dict[str, float]:
    """One training step of dataset ``name``, split into phases (seconds)."""
    t = {"start": time.perf_counter()}
    batch = trainer._next_batch(name)
    t["data"] = time.perf_counter()
    trainer.model.train()
    trainer.optimizer.zero_grad(set_to_none=True)
    out = trainer.model(batch["image"], heads=trainer.sources[name].tasks)
    t["forward"] = time.perf_counter()
    losses = trainer.criterion(out, batch, trainer.sources[name].tasks, trainer.step)
    t["loss"] = time.perf_counter()
    losses["loss"].backward()
    t["backward"] = time.perf_counter()
    trainer.optimizer.step()
    trainer.scheduler.step()
    trainer.step += 1
    t["optimizer"] = time.perf_counter()
    marks = ["start", *PHASES]
    return {p: t[p] - t[marks[i]] for i, p in enumerate(PHASES)}


#: name -> (config overrides, Adam implementation, torch.compile, torch threads or None)
VARIANTS: dict[str, tuple[list[str], str, bool, int | None]] = {
    "before": (["train.channels_last=false"], "foreach", False, None),  # the step before #15
    "default": ([], "default", False, None),  # personkit's defaults: channels_last, fused Adam
    "cl": (["train.channels_last=true"], "foreach", False, None),
    "fused": (["train.channels_last=false"], "fused", False, None),
    "loader": (["data.num_workers=1"], "default", False, None),  # one loader process
    "compile": ([], "default", True, None),
    "t1": ([], "default", False, 1),
}


def run_variant(data_root: str, variant: str, steps: int, warmup: int) -> dict[str, dict]:
    overrides, adam, compile_, threads = VARIANTS[variant]
    cfg = load_config(DEFAULT_CONFIG, [f"data.root={data_root}", "data.num_workers=0",
                                       *overrides])
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(cfg, tmp, progress=False)
        if adam != "default":
            for group in trainer.optimizer.param_groups:
                group["fused"], group["foreach"] = adam == "fused", adam == "foreach"
        if compile_:
            trainer.model = torch.compile(trainer.model)
        rows: dict[str, list[dict[str, float]]] = {}
        for i in range(warmup + steps):
            name = trainer.schedule.dataset_at(trainer.step)
            phases = timed_step(trainer, name)
            if i >= warmup:
                rows.setdefault(name, []).append(phases)
        trainer._iterators.clear()  # stops loader processes
    torch.set_num_threads(default_threads)
    return {name: {p: statistics.median(r[p] for r in recs) for p in PHASES}
            | {"total": statistics.median(sum(r.values()) for r in recs), "n": len(recs)}
            for name, recs in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--variants", default="before,default,loader")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, load "
          f"{os.getloadavg()[0]:.2f}, cpu capability {torch.backends.cpu.get_cpu_capability()}")
    results = {}
    for variant in args.variants.split(","):
        results[variant] = run_variant(args.data_root, variant, args.steps, args.warmup)
        base = results[next(iter(results))]
        for name, r in results[variant].items():
            parts = "  ".join(f"{p} {r[p] * 1e3:6.1f}" for p in PHASES)
            ratio = base[name]["total"] / r["total"]
            print(f"{variant:8s} {name:7s} n={r['n']:3d}  {parts}  total {r['total'] * 1e3:6.1f}"
                  f" ms  ({ratio:.2f}x {next(iter(results))})", flush=True)
    print(f"load after {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
