"""What GroupNorm costs at deployment (issue #27, item 4): the same network with GroupNorm and
with BatchNorm, timed on every engine ``personkit bench`` has, in one process.

The paper chooses GroupNorm for multi-dataset training (Sec. 4.5). BatchNorm in evaluation
mode is an affine map per channel, which ONNX Runtime and OpenVINO fold into the preceding
convolution (and NNCF quantizes whole); GroupNorm computes statistics per image and group at
run time, so it stays a separate layer (an fp32 island with layout reorders around it in
int8). Both models are randomly initialised (speed does not depend on the weights), built from
the same config with only ``model.backbone.norm`` changed; the four-task model and the
reid-only trunk are timed at each batch size, the two norms alternating run by run
(``--rounds``), and the table gives each engine's BN speed-up over GN (GN time / BN time).

    OMP_NUM_THREADS=2 python benchmarks/bench_norm.py --config personkit/configs/demo.yaml \
        --batch-sizes 1,10 --repeats 10 --out benchmarks/results/norm_speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def measure(config: str, norm: str, batch_sizes: list[int], repeats: int,
            skip: list[str]) -> dict:
    """The report of one ``Bench`` run of ``config`` with ``model.backbone.norm=norm``."""
    from personkit.deploy.bench import Bench
    from personkit.models.build import build_bench_models
    from personkit.models.loading import model_config_of

    source = None if config == "default" else config
    model, variants = build_bench_models(model_config_of(source, [f"model.backbone.norm={norm}"]))
    bench = Bench(model, {"reid-only": variants["reid-only"]}, "cpu", batch_sizes, 1, repeats,
                  skip, log=lambda line: print(f"[{norm}] {line}", flush=True))
    return bench.run()


def main() -> None:
    from personkit.runtime import machine_info

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="personkit/configs/demo.yaml",
                   help="a YAML config, or 'default': the paper's ResNet-50 GN at 256x128")
    p.add_argument("--batch-sizes", default="1,10")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2, help="GN, BN, GN, BN, ... (medians over "
                   "all rounds' runs)")
    p.add_argument("--out", default="runs/norm_speed.json")
    args = p.parse_args()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    skip = ["separate", "heads", "light"]
    runs: dict[str, dict[tuple, list[float]]] = {"group": {}, "batch": {}}
    roofline: dict[str, list] = {"group": [], "batch": []}
    for _ in range(args.rounds):
        for norm in ("group", "batch"):
            report = measure(args.config, norm, batches, args.repeats, skip)
            roofline[norm] += report["roofline"]
            for r in report["rows"]:
                if r["runs_ms"]:
                    runs[norm].setdefault((r["model"], r["engine"], r["batch"]), []).extend(
                        r["runs_ms"])
    rows = []
    for key in sorted(set(runs["group"]) & set(runs["batch"])):
        gn, bn = (statistics.median(runs[n][key]) for n in ("group", "batch"))
        rows.append({"model": key[0], "engine": key[1], "batch": key[2], "gn_ms": gn,
                     "bn_ms": bn, "bn_speedup": gn / bn})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": vars(args), "machine": machine_info(),
                                          "rows": rows, "roofline": roofline}, indent=1))
    print(f"\nmachine: {machine_info()['cpu']}")
    print("| model | engine | batch | GN ms | BN ms | BN speed-up |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['engine']} | {r['batch']} | {r['gn_ms']:.1f} | "
              f"{r['bn_ms']:.1f} | {r['bn_speedup']:.2f}× |")


if __name__ == "__main__":
    main()
