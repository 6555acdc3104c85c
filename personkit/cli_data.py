"""The ``personkit`` subcommands that make and annotate data: ``synth``, ``synth-mot``,
``annotate`` and ``score-annotations`` (registered when :mod:`personkit.cli` imports this
module)."""

from __future__ import annotations

import argparse
from pathlib import Path

from personkit.cli_options import MODEL_FILE, command, deprecated, model_option, opt, shared
from personkit.cli_options import out_file as _out_file
from personkit.cli_options import write_out_json as _write_json
from personkit.outputs import claim_file, claim_outputs


@command("synth", "write the synthetic Market-, MPII- and LIP-like datasets",
         opt("--out", required=True, help="output directory"),
         opt("--preset", default="small", help="tiny, small or full"), shared("--seed"),
         opt("--bias", type=float, default=0.0, help="dataset bias in [0, 1]: how differently "
             "the three sets look (0 = today's world; docs/synth.md)"), shared("--no-progress"),
         opt("--gap", action="store_true", help="then measure the domain gap between the sets"),
         shared("--overwrite", help="replace an earlier synthetic world in --out"))
def _cmd_synth(args: argparse.Namespace) -> int:
    from personkit.synth import synthesize
    from personkit.synth.gap import domain_gap
    from personkit.synth.world import MARKER

    if (Path(args.out) / MARKER).is_file() and not args.overwrite:  # synthesize replaces it
        raise FileExistsError(f"{Path(args.out) / MARKER}: {args.out} holds an earlier "
                              f"synthetic world: pass --overwrite to replace it, or another "
                              f"--out")
    print(synthesize(args.out, args.preset, args.seed, None, not args.no_progress, args.bias))
    if args.gap:
        print(domain_gap(args.out))
    return 0


@command("synth-mot", "write a synthetic MOT sequence (gt and noisy det)",
         opt("--out", required=True, help="sequence folder"),
         opt("--preset", default="tiny", help="tiny, tiny-b, crossing or street640"),
         shared("--seed"),
         shared("--overwrite", help="replace an earlier sequence in --out"))
def _cmd_synth_mot(args: argparse.Namespace) -> int:
    from personkit.synth.mot import write_mot_sequence

    claim_outputs(args.out, ("img1", "gt", "det", "seqinfo.ini"), args.overwrite, "synth-mot")
    seq = write_mot_sequence(args.out, args.preset, args.seed)
    print(f"wrote MOT sequence {seq} (img1/, gt/gt.txt, det/det.txt, seqinfo.ini)")
    return 0


@command("score-annotations", "score automatic annotations (market_auto) against a ground "
         "truth in the same format, e.g. the synthetic world's Market-1501-v15.09.15/hidden_truth",
         opt("auto_dir", help="automatic annotations folder (pose.csv, parts/)"),
         opt("truth_dir", help="ground-truth folder in the same format"),
         opt("--folders", default="bounding_box_train", help="comma-separated Market folders"),
         opt("--out", default=None, help="folder for scores.json (every score)"),
         shared("--overwrite", help="replace an earlier scores.json in --out"))
def _cmd_score_annotations(args: argparse.Namespace) -> int:
    from personkit.metrics.annotations import format_scores, score_annotations

    out = _out_file(args.out, "scores.json")
    if out:
        claim_file(out, args.overwrite, "score-annotations")
    result = score_annotations(args.auto_dir, args.truth_dir, args.folders.split(","))
    print(format_scores(result))
    _write_json(out, result)
    return 0


@command("annotate", "write automatic pose and part annotations (market_auto format) for a "
         "Market-style set",
         model_option(required=False, help="the model of both pose and parts (" + MODEL_FILE
                      + "; --pose/--parts: one model each)"),
         opt("--pose", default=None, help="pose model (default: --model)"),
         opt("--parts", default=None, help="20-class parts model (default: --model)"),
         opt("--root", required=True, help="Market-1501 root (holds bounding_box_train)"),
         opt("--out", default=None, help="output folder (default ROOT/auto_annotations)"),
         opt("--splits", default="train", help="comma-separated: train,query,gallery"),
         shared("--flip", help="average pose and parts with the mirrored crop's, left and right "
                "swapped back (--no-flip: one pass)"),
         shared("--overwrite", help="replace different annotations in --out"),
         deprecated("--force", "--overwrite", apply=lambda ns, _: setattr(ns, "overwrite", True)),
         shared("--batch-size"), shared("--device"), shared("--no-progress"))
def _cmd_annotate(args: argparse.Namespace) -> int:
    from personkit.inference.annotate import annotate_market

    pose, parts = args.pose or args.model, args.parts or args.model
    if not (pose and parts):
        raise ValueError("annotate needs a model: --model RUN (pose and parts), or --pose and "
                         "--parts")
    summary = annotate_market(pose, parts, args.root, args.out, splits=args.splits.split(","),
                              flip=args.flip, force=args.overwrite,
                              batch_size=args.batch_size, device=args.device,
                              progress=not args.no_progress)
    state = "unchanged (already up to date)" if summary.unchanged else "written"
    print(f"{summary.images} crops annotated -> {summary.out} ({state})")
    return 0
