"""The ``personkit`` command line: thin subcommands that parse, build and call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from personkit.config import ConfigError, load_config


def _cmd_train(args: argparse.Namespace) -> int:
    from personkit.engine.launch import train_run

    cfg = load_config(args.config, args.overrides)
    run = train_run(cfg, args.out, resume=args.resume, overwrite=args.overwrite,
                    nproc=args.nproc, progress=not args.no_progress)
    losses = [r["loss"] for r in run.history if "loss" in r]
    if losses and run.trainer is not None and run.trainer.is_main:
        print(f"trained {run.trainer.step} steps; last loss {losses[-1]:.4f}; run dir {args.out}")
    return run.exit_code


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from personkit.engine.evaluate import run_evaluation
    from personkit.models.loading import load_model_and_config
    from personkit.report import all_tables, to_jsonable
    from personkit.runtime import resolve_device

    _check_eval_engine_args(args)
    model, cfg = load_model_and_config(args.checkpoint, resolve_device(args.device, "--device"))
    model = _eval_engine(model, args)
    names = args.datasets.split(",") if args.datasets else None
    device = resolve_device(args.device) if args.engine == "torch" and not args.model else "cpu"
    results = run_evaluation(model, cfg, names, args.data_root, device=device,
                             batch_size=args.batch_size, flip_tta=not args.no_flip)
    print(all_tables(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(to_jsonable(results), indent=2))
        print(f"wrote {args.out}")
    return 0


def _check_eval_engine_args(args: argparse.Namespace) -> None:
    if args.int8 and (args.engine == "torch" or args.model):
        raise ValueError("--int8 quantizes the checkpoint for --engine onnxruntime or openvino; "
                         "to evaluate an int8 file already written, give it with --model")
    if args.int8 and not args.calib_data:
        raise ValueError("--int8 needs --calib-data ROOT (a folder of images to calibrate on)")


def _eval_engine(model: Any, args: argparse.Namespace) -> Any:
    """The model, or an :class:`EngineModel` running ``--model FILE`` / ``--engine`` (and
    ``--int8``) that the evaluation code takes for the model."""
    from personkit.inference.engines import EngineModel

    if args.model:
        return EngineModel.from_export(args.model, None if args.engine == "torch" else
                                       args.engine, threads=args.threads or None)
    if args.engine == "torch":
        return model
    return EngineModel.from_model(model, args.engine, int8=args.int8, calib_data=args.calib_data,
                                  calib_size=args.calib_size, threads=args.threads or None,
                                  log=print)


def _cmd_annotate(args: argparse.Namespace) -> int:
    from personkit.inference.annotate import annotate_market

    summary = annotate_market(args.pose, args.parts, args.root, args.out,
                              splits=args.splits.split(","), flip=args.flip, force=args.force,
                              batch_size=args.batch_size, device=args.device,
                              progress=not args.no_progress)
    state = "unchanged (already up to date)" if summary.unchanged else "written"
    print(f"{summary.images} crops annotated -> {summary.out} ({state})")
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

    heads = _heads(args.heads)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, heads,
                                          engine=args.engine, threads=args.threads or None,
                                          flip_tta=args.flip_tta, merge_parts=args.merge_parts,
                                          batch_size=args.batch_size)
    source = open_input(args.input, args.boxes, args.mot_source, args.min_score)
    summary = predict_source(predictor, source, args.out, vis=not args.no_vis,
                             save_parts=args.save_parts, progress=not args.no_progress)
    print(f"{summary['boxes']} boxes from {summary['images']} images ({source.kind} input) "
          f"-> {args.out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from personkit.inference.export import export_model

    ok = export_model(args.checkpoint, args.onnx, args.openvino, _heads(args.heads),
                      opset=args.opset, tol=args.tol, check=not args.no_check, int8=args.int8,
                      calib_data=args.calib_data, calib_size=args.calib_size)
    return 0 if ok else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    import torch  # OpenMP's wait settings are set by main() (personkit/runtime.py)

    from personkit.inference.bench import Bench, write_report
    from personkit.models.build import build_bench_models
    from personkit.models.loading import model_config_of

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


# ----------------------------------------------------------------- tracking (docs/tracking.md)


def _cmd_track(args: argparse.Namespace) -> int:
    import json

    from personkit.inference import Predictor
    from personkit.track import Tracker
    from personkit.track.io import open_track_source
    from personkit.track.run import track_source

    source = open_track_source(args.source, args.detections, args.mot_source)
    predictor = Predictor.from_checkpoint(args.run, args.device, batch_size=args.batch_size,
                                          merge_parts=args.merge_parts)
    tracker = Tracker(predictor, args.tracker, args.embeddings, frame_rate=source.frame_rate,
                      seed=args.seed, tracker_kwargs=dict(args.tracker_arg))
    out = Path(args.out)
    summary = track_source(tracker, source, out, video_out=args.video_out,
                           png_frames=args.png_frames, save_parts=args.save_parts,
                           keypoints=args.keypoints, progress=not args.no_progress)
    fps = summary["fps"]
    print(f"{summary['tracks']} tracks over {summary['frames']} frames -> {out} "
          f"({fps['total']:.1f} frames/s; network {fps['network']:.1f}, tracker "
          f"{fps['tracker']:.1f})")
    if args.eval:
        from personkit.track.evaluate import evaluate_mot, format_metrics

        gt = source.seq_dir / "gt" / "gt.txt" if source.seq_dir else None
        if gt is None or not gt.is_file():
            raise FileNotFoundError(f"--eval needs ground truth: {gt or 'a MOT sequence folder'}"
                                    f" not found")
        summary["metrics"] = evaluate_mot(gt, summary["results"], len(source), source.name)
        (out / "metrics.json").write_text(json.dumps(summary["metrics"], indent=1))
        print(format_metrics(summary["metrics"]))
    if args.gallery:
        from personkit.track.gallery import match_gallery

        tracks = [(s.track_id, e) for s in tracker.summaries() if (e := s.embedding()) is not None]
        matches = match_gallery(tracks, args.gallery, args.match_threshold)
        (out / "gallery_matches.json").write_text(json.dumps(matches, indent=1))
        for m in matches:
            hit = m["match"]
            print(f"  track {m['track_id']}: " + (f"matches {hit['name']} (distance "
                  f"{hit['distance']:.3f})" if hit else "no match (nearest "
                  f"{m['nearest'][0]['distance']:.3f})" if m["nearest"] else "no match"))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


def _cmd_synth_mot(args: argparse.Namespace) -> int:
    from personkit.synth.mot import write_mot_sequence

    seq = write_mot_sequence(args.out, args.preset, args.seed)
    print(f"wrote MOT sequence {seq} (img1/, gt/gt.txt, det/det.txt, seqinfo.ini)")
    return 0


def _tracker_arg(text: str) -> tuple[str, Any]:
    from personkit.track.tracker import parse_tracker_arg

    try:
        return parse_tracker_arg(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_track_parsers(sub: Any) -> None:
    from personkit.synth.mot import MOT_PRESETS

    p = sub.add_parser("track", help="follow people through a MOT sequence or a video; "
                       "attributes, pose, parts and an embedding per track (needs [track])")
    p.add_argument("run", help="run directory, .pt checkpoint or .safetensors export")
    p.add_argument("source", help="MOT sequence folder (img1/ + det/det.txt or gt/gt.txt), or "
                   "a video file with --detections")
    p.add_argument("--out", required=True, help="output folder (results.txt, tracks.json, ...)")
    p.add_argument("--detections", default=None, help="video input: MOT-format det.txt")
    p.add_argument("--mot-source", default="auto", choices=("auto", "det", "gt"))
    p.add_argument("--tracker", default="botsort",
                   choices=("deepocsort", "botsort", "bytetrack", "ocsort"))
    p.add_argument("--embeddings", default="personkit", choices=("personkit", "none", "random"),
                   help="appearance: the network's, none (motion only) or random (control)")
    p.add_argument("--gallery", default=None, help="bank of earlier tracks (gallery.json or "
                   ".npy written by a previous run) to match this run's tracks against")
    p.add_argument("--match-threshold", type=float, default=0.3, help="max cosine distance")
    p.add_argument("--eval", action="store_true", help="HOTA/IDF1/MOTA with TrackEval "
                   "against gt/gt.txt; prints and writes metrics.json")
    p.add_argument("--video-out", action="store_true", help="write an annotated H.264 video.mp4")
    p.add_argument("--png-frames", action="store_true", help="write annotated frames/*.png")
    p.add_argument("--save-parts", action="store_true", help="part label PNGs per track frame")
    p.add_argument("--keypoints", action="store_true", help="per-frame keypoints in tracks.json")
    p.add_argument("--merge-parts", action="store_true", help="20 LIP part classes -> 5 merged")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch-size", type=int, default=32, help="crops per forward pass")
    p.add_argument("--seed", type=int, default=0, help="seed of --embeddings random")
    p.add_argument("--tracker-arg", action="append", default=[], type=_tracker_arg,
                   metavar="KEY=VALUE", help="BoxMOT tracker argument, e.g. "
                   "appearance_thresh=0.3 (repeatable; overrides personkit's defaults)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_track)

    p = sub.add_parser("synth-mot", help="write a synthetic MOT sequence (gt and noisy det)")
    p.add_argument("--out", required=True, help="sequence folder")
    p.add_argument("--preset", default="tiny", choices=sorted(MOT_PRESETS))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_synth_mot)
def _heads(text: str | None) -> list[str] | None:
    """``--heads reid,pose`` -> ``["reid", "pose"]`` (None: every head the model has)."""
    return text.split(",") if text else None


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


# ---------------------------------------------------------------- study and annotation scores


def _cmd_score_annotations(args: argparse.Namespace) -> int:
    import json

    from personkit.metrics.annotations import score_annotations

    result = score_annotations(args.auto_dir, args.truth_dir, args.folders.split(","))
    pose, parts = result["pose"], result["parts"]
    print(f"pose : PCKh@0.5 {pose['Mean']:.4f}  UBody {pose['UBody']:.4f}  "
          f"({pose['num_images']} crops, {pose['num_missing']} without a prediction)")
    print(f"parts: mIoU {parts['mIoU']:.4f}  mIoU5 {parts['mIoU5']:.4f}  pixel acc "
          f"{parts['pixel_acc']:.4f}  ({parts['num_images']} crops, {parts['num_missing']} "
          f"without a mask)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from personkit.engine.study import StudyRunError, run_study

    if args.job:  # one job of `--jobs N`, started by the parent study (an internal option)
        from personkit.engine.study_jobs import run_one_job

        run_one_job(args.spec, args.out, args.job, progress=not args.no_progress)
        return 0
    try:
        summary = run_study(args.spec, args.out, nproc=args.nproc, report=args.report,
                            progress=not args.no_progress, only=args.rows, jobs=args.jobs)
    except StudyRunError as e:
        print(f"personkit study: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("personkit study: interrupted; finished jobs are recorded, rerun to resume",
              file=sys.stderr)
        return 130
    print(f"{summary['ran']} runs trained, {summary['skipped']} already done; "
          f"{summary['study_md']}")
    return 0


def _add_study_commands(sub: Any) -> None:
    p = sub.add_parser("score-annotations", help="score automatic annotations (market_auto) "
                       "against a ground truth in the same format, e.g. the synthetic world's "
                       "Market-1501-v15.09.15/hidden_truth")
    p.add_argument("auto_dir", help="automatic annotations folder (pose.csv, parts/)")
    p.add_argument("truth_dir", help="ground-truth folder in the same format")
    p.add_argument("--folders", default="bounding_box_train",
                   help="comma-separated Market folders to score")
    p.add_argument("--out", default=None, help="write every score to this JSON file")
    p.set_defaults(func=_cmd_score_annotations)

    p = sub.add_parser("study", help="run a grid of trainings (a study spec), evaluate each "
                       "with the official protocols and write tables and Fig. 5")
    p.add_argument("spec", help="study spec YAML, e.g. configs/study/quick.yaml")
    p.add_argument("--out", required=True, help="study folder (results.jsonl, study.md, "
                   "fig5.png, runs/)")
    p.add_argument("--nproc", type=int, default=1, help="data-parallel processes per run "
                   "(torchrun)")
    p.add_argument("--report", default=None, help="also write the results section of this "
                   "Markdown file (e.g. docs/study.md)")
    p.add_argument("--rows", default=None, help="comma-separated row names to run (default all)")
    p.add_argument("--jobs", type=_positive_int, default=1, help="run up to N independent "
                   "(row, seed) jobs at a time, each in its own process with cores/N threads "
                   "(and one CUDA device per slot when there are several); logs in each run "
                   "dir's study.log (default 1: one after the other, in this process)")
    p.add_argument("--job", default=None, help=argparse.SUPPRESS)  # ROW:SEED, for --jobs
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_cmd_study)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", help="YAML config, e.g. configs/tiny.yaml")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--out", required=True, help="run directory (logs, checkpoints)")
    p.add_argument("--resume", default=None, help="'auto' (newest valid checkpoint) or a path")
    p.add_argument("--overwrite", action="store_true", help="start a new run in a folder "
                   "holding another run's checkpoints, moving them aside (never deleted)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--nproc", type=_positive_int, default=1, help="data-parallel processes on this "
                   "machine (launches torchrun; batch sizes in the config are global)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a run or checkpoint with the official protocols")
    p.add_argument("checkpoint", help="run directory, .pt checkpoint or .safetensors export")
    p.add_argument("--datasets", default=None, help="comma-separated data.eval names (default all)")
    p.add_argument("--data-root", default=None, help="base directory for relative dataset roots")
    p.add_argument("--out", default=None, help="write every score to this JSON file")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--no-flip", action="store_true", help="no flip TTA for ReID embeddings")
    p.add_argument("--engine", default="torch", choices=("torch", "onnxruntime", "openvino"),
                   help="run the checkpoint on this engine (exported per evaluation input size)")
    p.add_argument("--int8", action="store_true", help="evaluate the int8 export (ONNX Runtime "
                   "or OpenVINO), calibrated on --calib-data")
    p.add_argument("--calib-data", default=None, help="folder of images to calibrate int8 on")
    p.add_argument("--calib-size", type=_positive_int, default=300,
                   help="calibration crops for --int8")
    p.add_argument("--model", default=None, help="evaluate this export (.onnx, OpenVINO folder "
                   "or .xml, int8 or not) instead; CHECKPOINT still gives the data.eval sets")
    p.add_argument("--threads", type=int, default=0, help="engine CPU threads (default: the "
                   "engine's, one per core)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("annotate", help="write automatic pose and part annotations "
                       "(market_auto format) for a Market-style set")
    p.add_argument("--pose", required=True, help="pose model: run directory or weight file")
    p.add_argument("--parts", required=True, help="20-class parts model (may be the same run)")
    p.add_argument("--root", required=True, help="Market-1501 root (holds bounding_box_train)")
    p.add_argument("--out", default=None, help="output folder (default ROOT/auto_annotations)")
    p.add_argument("--splits", default="train", help="comma-separated: train,query,gallery")
    p.add_argument("--flip", action="store_true", help="average with the mirrored crop")
    p.add_argument("--force", action="store_true", help="replace different annotations")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_annotate)

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
    p.add_argument("--engine", default="torch", choices=("torch", "onnxruntime", "openvino"),
                   help="inference engine (onnxruntime/openvino export the checkpoint in "
                   "memory first; an exported .onnx or OpenVINO folder is used as is)")
    p.add_argument("--threads", type=int, default=0, help="engine CPU threads (default: "
                   "personkit's runtime default, see docs/inference.md)")
    p.add_argument("--heads", default=None, help="comma-separated subset of reid,attributes,pose,"
                   "segmentation (default: all the model has)")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--flip-tta", action="store_true", help="average embeddings with the mirror")
    p.add_argument("--merge-parts", action="store_true", help="20 LIP classes -> 5 merged")
    p.add_argument("--mot-source", default="auto", choices=("auto", "det", "gt"))
    p.add_argument("--min-score", type=float, default=None, help="MOT det: minimum confidence")
    p.add_argument("--save-parts", action="store_true", help="also write part label PNGs")
    p.add_argument("--no-vis", action="store_true", help="do not draw overlays")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="export to ONNX / OpenVINO (fp32, int8) and check parity")
    p.add_argument("checkpoint", help="run directory, .pt checkpoint or .safetensors export")
    p.add_argument("--onnx", default=None, help="output .onnx file")
    p.add_argument("--openvino", default=None, help="output folder for the OpenVINO IR "
                   "(model.xml + model.bin, converted from the ONNX export)")
    p.add_argument("--int8", action="store_true", help="also write int8 copies (post-training "
                   "quantization: ONNX Runtime static QDQ for --onnx, NNCF for --openvino)")
    p.add_argument("--calib-data", default=None, help="folder of images (any personkit dataset, "
                   "searched recursively) to calibrate --int8 on")
    p.add_argument("--calib-size", type=int, default=300, help="calibration crops (default 300)")
    p.add_argument("--heads", default=None, help="comma-separated subset of reid,attributes,pose,"
                   "segmentation (default: all the model has)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--tol", type=float, default=None, help="relative parity tolerance (default: "
                   "the model's float32 rounding bound, about 1e-4 for a ResNet-18)")
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
    p.add_argument("--repeats", type=_positive_int, default=5)
    p.add_argument("--skip", default="", help="comma-separated: onnx,openvino,int8,roofline,"
                   "separate,heads,light,cuda")
    p.add_argument("--threads", type=int, default=0, help="torch/ONNX Runtime CPU threads "
                   "(default: torch's, one per core)")
    p.add_argument("--out", default="runs/bench", help="folder for bench.json and bench.md")
    p.set_defaults(func=_cmd_bench)
    _add_track_parsers(sub)
    _add_study_commands(sub)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; ``key=value`` overrides may also come after the options
    (``personkit train CONFIG --out RUN train.lr=5e-4``), for subcommands that take them."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        overrides = all(not x.startswith("-") and "=" in x for x in extra)
        if not hasattr(args, "overrides") or not overrides:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from personkit.runtime import apply_defaults

    apply_defaults()  # before any command imports torch (see personkit/runtime.py)
    args = parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"personkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # an optional extra that is not installed (with its command)
        from personkit.extras import MissingExtraError

        if not isinstance(e, MissingExtraError):
            raise
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
