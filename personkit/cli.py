"""The ``personkit`` command line: thin subcommands that parse, build and call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from personkit.config import ConfigError, load_config, save_config


def _cmd_train(args: argparse.Namespace) -> int:
    from personkit.build import build_trainer, resolve_device, validate_training
    from personkit.engine import distributed

    cfg = load_config(args.config, args.overrides)
    if args.nproc > 1 and not distributed.launched_by_torchrun():
        validate_training(cfg, args.nproc)  # config errors stop here, before any launch
        argv = ["train", args.config, *args.overrides, "--out", args.out]
        argv += (["--resume", args.resume] if args.resume else []) + (
            ["--no-progress"] if args.no_progress else [])
        return distributed.launch(args.nproc, argv)
    distributed.init_from_env(resolve_device(cfg.train.device))  # under torchrun
    rank, world = distributed.get_rank(), distributed.get_world_size()
    out = Path(args.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    trainer = build_trainer(cfg, out, rank, world, progress=not args.no_progress)
    _resume(trainer, args.resume)
    history = trainer.train()
    distributed.destroy()  # only after success: a failed rank exits and torchrun stops the rest
    losses = [r["loss"] for r in history if "loss" in r]
    if losses and rank == 0:
        print(f"trained {trainer.step} steps; last loss {losses[-1]:.4f}; run dir {out}")
    return 0


def _resume(trainer: Any, resume: str | None) -> None:
    """``--resume auto`` (newest valid checkpoint, if any) or ``--resume PATH``."""
    from personkit.engine.checkpoint import list_checkpoints, load_checkpoint

    if not resume:
        found = list_checkpoints(trainer.run_dir / "checkpoints")
        if found and trainer.is_main:
            print(f"warning: {trainer.run_dir} holds checkpoints of an earlier run (up to "
                  f"{found[-1].name}); this run starts at step 0 (use --resume auto to "
                  f"continue instead)", file=sys.stderr)
        return
    if resume == "auto":
        path = trainer.resume_latest()
    else:
        trainer.load_state_dict(load_checkpoint(resume), source=resume)
        path = resume
    if path and trainer.is_main:
        print(f"resumed from {path} at step {trainer.step}")


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from personkit.build import resolve_device, run_evaluation
    from personkit.models.loading import load_model_and_config
    from personkit.report import all_tables, to_jsonable

    model, cfg = load_model_and_config(args.checkpoint, resolve_device(args.device))
    names = args.datasets.split(",") if args.datasets else None
    results = run_evaluation(model, cfg, names, args.data_root, device=resolve_device(args.device),
                             batch_size=args.batch_size, flip_tta=not args.no_flip)
    print(all_tables(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(to_jsonable(results), indent=2))
        print(f"wrote {args.out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from personkit.demo import TARGETS, run_demo

    result = run_demo(args.out, args.preset, args.seed, args.config, args.overrides)
    print(f"\nreport: {result['report']}")
    for name, value in result["headline"].items():
        shown = "n/a" if value is None else f"{value:.3f}"
        print(f"  {name:<26} {shown}  (target >= {TARGETS[name]:.2f})")
    print(f"  total time {result['timings']['total']:.0f} s")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from personkit.synth import synthesize

    summary = synthesize(args.out, args.preset, args.seed)
    for key, value in summary.counts.items():
        print(f"  {key:<28} {value}")
    print(f"wrote {args.out} ({summary.seconds:.1f} s)")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from personkit.inference import Predictor
    from personkit.inference.run import predict_source
    from personkit.inference.sources import open_input

    heads = args.heads.split(",") if args.heads else None
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, heads,
                                          flip_tta=args.flip_tta, merge_parts=args.merge_parts,
                                          batch_size=args.batch_size)
    source = open_input(args.input, args.boxes, args.mot_source, args.min_score)
    summary = predict_source(predictor, source, args.out, vis=not args.no_vis,
                             save_parts=args.save_parts, progress=not args.no_progress)
    print(f"{summary['boxes']} boxes from {summary['images']} images ({source.kind} input) "
          f"-> {args.out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from personkit.inference.export import check_parity, export_onnx
    from personkit.models.loading import load_model

    model = load_model(args.checkpoint, "cpu")
    heads = args.heads.split(",") if args.heads else None
    path = export_onnx(model, args.onnx, heads, opset=args.opset)
    print(f"wrote {path}")
    if args.no_check:
        return 0
    report = check_parity(model, path, heads, tol=args.tol)
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    import os

    # Idle OpenMP threads sleep instead of spinning: on a shared CPU, spinning threads stall
    # each other's barriers and latencies become erratic. Read when torch loads OpenMP.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from personkit.build import build_bench_models, model_config_of
    from personkit.inference.bench import Bench, write_report

    if args.threads:
        torch.set_num_threads(args.threads)
    model, variants = build_bench_models(model_config_of(args.source, args.set or ()))
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    skip = args.skip.split(",") if args.skip else ()
    bench = Bench(model, variants, args.device, batch_sizes, args.warmup, args.repeats, skip,
                  log=lambda line: print(line, flush=True),
                  command="personkit " + " ".join(sys.argv[1:]))
    report = bench.run(args.out)
    json_path, md_path = write_report(report, args.out)
    print(md_path.read_text(encoding="utf-8"), end="")
    print(f"wrote {json_path} and {md_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", help="YAML config, e.g. configs/tiny.yaml")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--out", required=True, help="run directory (logs, checkpoints)")
    p.add_argument("--resume", default=None, help="'auto' (newest valid checkpoint) or a path")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--nproc", type=int, default=1, help="data-parallel processes on this "
                   "machine (launches torchrun; batch sizes in the config are global)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a run or checkpoint with the official protocols")
    p.add_argument("checkpoint", help="run directory, .pt checkpoint or .safetensors export")
    p.add_argument("--datasets", default=None, help="comma-separated data.eval names (default all)")
    p.add_argument("--data-root", default=None, help="base directory for relative dataset roots")
    p.add_argument("--out", default=None, help="write every score to this JSON file")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-flip", action="store_true", help="no flip TTA for ReID embeddings")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("demo", help="synthesise, train, evaluate and report, end to end")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides of the demo config")
    p.add_argument("--out", default="runs/demo", help="output directory")
    p.add_argument("--preset", default="small", help="synthetic world size: tiny, small, full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=None, help="config instead of the built-in "
                   "personkit/configs/demo.yaml")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("synth", help="write the synthetic Market-, MPII- and LIP-like datasets")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--preset", default="small", help="tiny, small or full")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("predict", help="run a model on your boxes, crops or a MOT sequence")
    p.add_argument("checkpoint", help="run directory, .pt checkpoint or .safetensors export")
    p.add_argument("input", help="an image (with --boxes or IMAGE.txt/.csv/.json next to it), "
                   "a folder of crops, or a MOT sequence folder (img1/ + det/ or gt/)")
    p.add_argument("--out", required=True, help="output folder (results.jsonl, embeddings.npy, "
                   "vis/)")
    p.add_argument("--boxes", default=None, help="boxes file: x1,y1,x2,y2[,score] lines or JSON")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--heads", default=None, help="comma-separated subset of reid,attributes,pose,"
                   "segmentation (default: all the model has)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--flip-tta", action="store_true", help="average embeddings with the mirror")
    p.add_argument("--merge-parts", action="store_true", help="20 LIP classes -> 5 merged")
    p.add_argument("--mot-source", default="auto", choices=("auto", "det", "gt"))
    p.add_argument("--min-score", type=float, default=None, help="MOT det: minimum confidence")
    p.add_argument("--save-parts", action="store_true", help="also write part label PNGs")
    p.add_argument("--no-vis", action="store_true", help="do not draw overlays")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="export to ONNX and check parity with PyTorch")
    p.add_argument("checkpoint", help="run directory, .pt checkpoint or .safetensors export")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--heads", default=None, help="comma-separated subset of reid,attributes,pose,"
                   "segmentation (default: all the model has)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--tol", type=float, default=1e-4, help="relative parity tolerance")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("bench", help="measure crops/s: four-task vs single-task models")
    p.add_argument("source", nargs="?", default=None, help="YAML config or checkpoint (default: "
                   "ResNet-50 GN at 256x128, random weights)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="config override, e.g. model.backbone.name=resnet18 (repeatable)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch-sizes", default="1,10,32")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip", default="", help="comma-separated: onnx,separate,heads,light,cuda")
    p.add_argument("--threads", type=int, default=0, help="torch/ONNX Runtime CPU threads "
                   "(default: torch's, one per core)")
    p.add_argument("--out", default="runs/bench", help="folder for bench.json and bench.md")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"personkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # a run that had to stop or weights that do not fit
        from personkit.engine.trainer import TrainingError
        from personkit.models import WeightsError

        if not isinstance(e, (TrainingError, WeightsError)):
            raise
        print(f"personkit {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
