"""The ``personkit`` command line: thin subcommands that parse, build and call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from personkit.config import ConfigError, load_config, save_config


def _cmd_train(args: argparse.Namespace) -> int:
    from personkit.build import build_trainer

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    trainer = build_trainer(cfg, out, progress=not args.no_progress)
    if args.resume:
        resumed = trainer.resume_latest() if args.resume == "auto" else None
        if args.resume != "auto":
            from personkit.engine.checkpoint import load_checkpoint

            trainer.load_state_dict(load_checkpoint(args.resume))
            resumed = Path(args.resume)
        if resumed:
            print(f"resumed from {resumed} at step {trainer.step}")
    history = trainer.train()
    losses = [r["loss"] for r in history if "loss" in r]
    if losses:
        print(f"trained {trainer.step} steps; last loss {losses[-1]:.4f}; run dir {out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from personkit.build import load_model_and_config, resolve_device, run_evaluation
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
    config = Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml"
    ns = argparse.Namespace(config=str(config), out=args.out, overrides=[], resume=None,
                            no_progress=False)
    return _cmd_train(ns)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", help="YAML config, e.g. configs/tiny.yaml")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--out", required=True, help="run directory (logs, checkpoints)")
    p.add_argument("--resume", default=None, help="'auto' (newest valid checkpoint) or a path")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
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

    p = sub.add_parser("demo", help="run the end-to-end demo")
    p.add_argument("--out", default="runs/demo", help="output directory")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"personkit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
