"""The ``personkit`` command line: each subcommand declares its options next to the function
that runs it, and that function calls one function of the package (the pipelines live there,
not here) and prints what it returns; errors become one line on stderr."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from personkit.cli_options import (
    COMMANDS,
    command,
    deprecated,
    legacy_model_argv,
    model_option,
    network_options,
    opt,
    positive_int,
    shared,
)
from personkit.cli_options import build_parser as _build_parser
from personkit.cli_options import comma_list as _list
from personkit.cli_options import out_file as _out_file
from personkit.cli_options import write_out_json as _write_json
from personkit.config import load_config
from personkit.outputs import claim_file, claim_outputs

#: What an interrupted (Ctrl-C) command left, and how to go on.
RESUME = {"study": "finished jobs are recorded, rerun to resume",
          "train": "its checkpoints are kept: continue with --resume auto"}


@command("train", "train a model from a YAML config",
         opt("config", help="YAML config, e.g. configs/tiny.yaml"), shared("overrides"),
         opt("--out", required=True, help="run directory (logs, checkpoints)"),
         shared("--resume"), shared("--no-progress"),
         shared("--overwrite", help="start a new run in a folder holding another run's "
                "checkpoints, moving them aside (never deleted)"),
         opt("--nproc", type=positive_int, default=1, help="data-parallel processes on this "
             "machine (launches torchrun; batch sizes in the config are global)"))
def _cmd_train(args: argparse.Namespace) -> int:
    from personkit.engine.launch import train_run

    cfg = load_config(args.config, args.overrides)
    run = train_run(cfg, args.out, resume=args.resume, overwrite=args.overwrite,
                    nproc=args.nproc, progress=not args.no_progress)
    losses = [r["loss"] for r in run.history if "loss" in r]
    if losses and run.trainer is not None and run.trainer.is_main:
        print(f"trained {run.trainer.step} steps; last loss {losses[-1]:.4f}; run dir {args.out}")
    return run.exit_code


@command("train-detector", "train a person detector on synthetic MOT frames, evaluate its AP",
         opt("config", help="YAML config, e.g. configs/detector_synth.yaml"), shared("overrides"),
         opt("--out", required=True, help="run directory (model.safetensors, metrics.json)"),
         shared("--resume"), shared("--no-progress"),
         shared("--overwrite", help="start a new run in a folder holding another run's "
                "checkpoints, moving them aside (never deleted)"))
def _cmd_train_detector(args: argparse.Namespace) -> int:
    from personkit.config import load_detector_config
    from personkit.engine.detector import train_detector

    scores = train_detector(load_detector_config(args.config, args.overrides), args.out,
                            resume=args.resume, overwrite=args.overwrite,
                            progress=not args.no_progress)
    print(f"detector {scores['model']}: AP {scores['AP']:.3f}, AP50 {scores['AP50']:.3f} on "
          f"{', '.join(scores['eval_sequences'])} ({scores['images']} frames)")
    return 0


@command("eval", "evaluate a run or checkpoint with the official protocols",
         model_option(),
         opt("--datasets", default=None, help="comma-separated data.eval names (default all)"),
         opt("--data-root", default=None, help="base directory for relative dataset roots"),
         opt("--out", default=None, help="folder for metrics.json (every score)"),
         opt("--int8", action="store_true", help="evaluate --engine's int8 export (--calib-data)"),
         opt("--export", default=None, help="evaluate this export (.onnx, OpenVINO folder or "
             ".xml, int8 or not) instead; --model still gives the data.eval sets"),
         *network_options(command="eval", engine="run the model on this engine (exported per "
                          "evaluation input size; eager torch, the protocols' reference, by "
                          "default)"),
         shared("--calib-data"), shared("--calib-size"), shared("--verbose"),
         shared("--overwrite", help="replace an earlier evaluation's metrics.json in --out"))
def _cmd_eval(args: argparse.Namespace) -> int:
    from personkit.deploy.engines import evaluate_checkpoint
    from personkit.report import all_tables, to_jsonable

    out = _out_file(args.out, "metrics.json")
    if out:
        claim_file(out, args.overwrite, "eval")
    results = evaluate_checkpoint(
        args.model, _list(args.datasets), args.data_root, device=args.device,
        batch_size=args.batch_size, flip_tta=args.flip, engine=args.engine,
        export=args.export, int8=args.int8, calib_data=args.calib_data,
        calib_size=args.calib_size, threads=args.threads or None, precision=args.precision)
    print(all_tables(results))
    _write_json(out, to_jsonable(results))
    return 0


@command("demo", "synthesise, train, evaluate and report, end to end",
         shared("overrides", help="overrides of the demo config, section.key=value"),
         opt("--out", default="runs/demo", help="output directory"),
         opt("--preset", default="small", help="synthetic world size: tiny, small, full"),
         opt("--config", default=None, help="config instead of the built-in demo.yaml"),
         opt("--video", action="store_true", help="frames in, people out: train the person "
             "detector, then track a held-out video with it (overrides: the detector's)"),
         shared("--seed"),
         shared("--overwrite", help="replace an earlier demo's results in --out (its run is "
                "moved aside; the synthetic world is reused when it is the same)"))
def _cmd_demo(args: argparse.Namespace) -> int:
    from personkit.demo import format_result, format_video_result, run_demo, run_video_demo

    claim_outputs(args.out, ["video"] if args.video else ["metrics.json", "report.md"],
                  args.overwrite, "demo")
    print("\n" + (format_video_result(run_video_demo(args.out, args.overrides)) if args.video
                  else format_result(run_demo(args.out, args.preset, args.seed, args.config,
                                              args.overrides))))
    return 0


@command("predict", "run a model on your boxes, crops, a MOT sequence or, with --detector, "
         "frames", model_option(),
         opt("input", help="an image (with --boxes or IMAGE.txt/.csv/.json next to it), a "
             "folder of crops, a MOT sequence folder (img1/ + det/ or gt/); with --detector "
             "an image, a folder of frames or a MOT sequence's img1/"),
         opt("--out", required=True, help="output folder (results.jsonl, embeddings.npy, vis/)"),
         opt("--boxes", default=None, help="boxes file: x1,y1,x2,y2[,score] lines or JSON"),
         deprecated("--flip-tta", "--flip (the default)",
                    apply=lambda ns, _: setattr(ns, "flip", True)),
         opt("--min-score", type=float, default=None, help="MOT det: minimum confidence"),
         opt("--save-parts", action="store_true", help="also write part label PNGs"),
         opt("--no-vis", action="store_true", help="do not draw overlays"),
         opt("--crops", action="store_true", help="INPUT is a folder of person crops, even "
             "if some are wider than tall"),
         shared("--overwrite", help="replace an earlier run's results in --out (only those)"),
         *network_options(), shared("--heads"), shared("--merge-parts"),
         shared("--mot-source"), shared("--detector"), shared("--detector-score"),
         shared("--no-progress"))
def _cmd_predict(args: argparse.Namespace) -> int:
    from personkit.cli_objects import open_person_detector, open_predictor
    from personkit.inference.run import claim_output, predict_input, predict_source

    source = predict_input(args.input, boxes=args.boxes, mot_source=args.mot_source,
                           min_score=args.min_score, crops=args.crops,
                           frames=args.detector is not None)
    if Path(args.out).is_file():  # all three checked before the model is read
        raise NotADirectoryError(20, "--out names a file; give a folder", args.out)
    claim_output(Path(args.out), args.overwrite)
    predictor = open_predictor(args.model, args)
    summary = predict_source(predictor, source, args.out, vis=not args.no_vis,
                             save_parts=args.save_parts, progress=not args.no_progress,
                             overwrite=args.overwrite,
                             detector=open_person_detector(args, predictor.device.type))
    print(f"{summary['boxes']} boxes from {summary['images']} images ({summary['input']} "
          f"input) -> {args.out}")
    return 0


@command("export", "export to ONNX / OpenVINO (fp32, int8) and check parity",
         model_option(),
         opt("--onnx", default=None, help="output .onnx file"),
         opt("--openvino", default=None, help="output folder for the OpenVINO IR (model.xml + "
             "model.bin, converted from the ONNX export)"),
         opt("--int8", action="store_true", help="also write int8 copies (post-training "
             "quantization: ONNX Runtime static QDQ for --onnx, NNCF for --openvino)"),
         opt("--opset", type=int, default=17, help="ONNX opset (>= 17)"),
         opt("--tol", type=float, default=None, help="relative parity tolerance (default: the "
             "model's float32 rounding bound, about 1e-4 for a ResNet-18)"),
         opt("--no-check", action="store_true", help="skip the parity checks"),
         opt("--auto", action="store_true", help="export the run for every engine this "
             "machine supports into RUN/engines/, check each against torch fp32 on the run's "
             "evaluation sets, time each, and write RUN/engine_checks.json: what --engine "
             "auto reads (int8 calibrated on --calib-data, default the training images)"),
         shared("--calib-data"), shared("--calib-size"), shared("--heads"), shared("--verbose"),
         shared("--overwrite", help="replace an existing --onnx file or --openvino folder "
                "(--auto: the run's engines/ and engine_checks.json)"))
def _cmd_export(args: argparse.Namespace) -> int:
    from personkit.deploy.export import export_model

    if args.auto:
        return _export_auto(args)
    for path in filter(None, (args.onnx, args.openvino)):
        claim_file(path, args.overwrite, "export")
    ok = export_model(args.model, args.onnx, args.openvino, _list(args.heads),
                      opset=args.opset, tol=args.tol, check=not args.no_check, int8=args.int8,
                      calib_data=args.calib_data, calib_size=args.calib_size)
    return 0 if ok else 1


def _export_auto(args: argparse.Namespace) -> int:
    """``personkit export --model RUN --auto`` (:func:`personkit.deploy.checks.export_auto`)."""
    from personkit.deploy.checks import export_auto

    given = [f for f, on in (("--onnx", args.onnx), ("--openvino", args.openvino),
                             ("--int8", args.int8), ("--heads", args.heads),
                             ("--no-check", args.no_check)) if on]
    if given:
        raise ValueError(f"--auto writes every engine's files into the run and checks them; "
                         f"it takes no {', '.join(given)}")
    from personkit.models.detector import is_detector_file

    if is_detector_file(args.model):  # a train-detector run: its AP on each engine
        from personkit.deploy.detector_checks import check_detector_engines

        check_detector_engines(args.model, overwrite=args.overwrite)
        return 0
    export_auto(args.model, calib_data=args.calib_data, calib_size=args.calib_size,
                overwrite=args.overwrite)
    return 0


@command("bench", "measure crops/s: four-task vs single-task models",
         model_option(required=False, help="YAML config or model (default: ResNet-50 GN at "
                      "256x128, random weights)"),
         shared("overrides"),
         deprecated("--set", "KEY=VALUE after the options", takes_value=True,
                    apply=lambda ns, v: setattr(ns, "set", [*(ns.set or []), v])),
         opt("--batch-sizes", default="1,10,32", help="comma-separated batch sizes"),
         opt("--warmup", type=int, default=1, help="untimed runs before each measurement"),
         opt("--repeats", type=positive_int, default=5, help="timed runs (the median counts)"),
         opt("--skip", default="", help="sections to leave out: onnx,openvino,int8,bf16,"
             "roofline,separate,heads,light,cuda"),
         opt("--out", default="runs/bench", help="folder for bench.json and bench.md"),
         shared("--device"), shared("--verbose"),
         shared("--threads", help="torch/ONNX Runtime CPU threads (0: torch's, one per core)"),
         shared("--overwrite", help="replace an earlier bench.json and bench.md in --out"))
def _cmd_bench(args: argparse.Namespace) -> int:
    from personkit.deploy.bench import run_bench

    claim_outputs(args.out, ("bench.json", "bench.md"), args.overwrite, "bench")
    print(run_bench(args.model, [*(args.set or []), *args.overrides], args.device,
                    args.batch_sizes.split(","), args.warmup, args.repeats,
                    _list(args.skip) or (), args.threads, args.out,
                    command="personkit " + " ".join(sys.argv[1:])))
    return 0


@command("track", "follow people through a MOT sequence or a video; attributes, pose, parts "
         "and an embedding per track (needs [track])",
         model_option(),
         opt("source", help="MOT sequence folder (img1/ + det/det.txt or gt/gt.txt), or a "
             "video file with --detections; with --detector also a folder of frames, a "
             "camera (/dev/video0) or a stream (rtsp://, http://), in real time"),
         opt("--out", required=True, help="output folder (results.txt, tracks.json, ...)"),
         opt("--detections", default=None, help="video input: MOT-format det.txt"),
         opt("--tracker", default="botsort", help="BoxMOT tracker",
             choices=("botsort", "deepocsort", "bytetrack", "ocsort")),
         opt("--embeddings", default="personkit", choices=("personkit", "none", "random"),
             help="appearance: the network's, none (motion only) or random (control)"),
         opt("--gallery", default=None, help="bank of earlier tracks (gallery.json or .npy "
             "written by a previous run) to match this run's tracks against"),
         opt("--match-threshold", type=float, help="max cosine distance (default: calibrated)"),
         opt("--eval", action="store_true", help="HOTA/IDF1/MOTA against gt/gt.txt (TrackEval)"),
         opt("--video-out", action="store_true", help="write an annotated H.264 video.mp4"),
         opt("--png-frames", action="store_true", help="write annotated frames/*.png"),
         opt("--save-parts", action="store_true", help="part label PNGs per track frame"),
         opt("--keypoints", action="store_true", help="per-frame keypoints in tracks.json"),
         opt("--thumb-overlays", action="store_true", help="also thumbs/ID_overlay.jpg: the "
             "best view with parts, skeleton and the track's gender drawn"),
         opt("--jsonl", default=None, help="stream each frame's people as JSON lines to this "
             "file as they are tracked (- : stdout; the summary then goes to stderr)"),
         opt("--tracker-arg", action="append", default=[],
             metavar="KEY=VALUE", help="BoxMOT tracker argument, e.g. appearance_thresh=0.3 "
             "(repeatable; overrides personkit's defaults)"),
         shared("--detector"), shared("--detector-score"),
         shared("--mot-source"), shared("--start-time"), shared("--merge-parts"),
         *network_options(), shared("--heads"),
         shared("--seed", help="seed of --embeddings random"), shared("--no-progress"),
         shared("--overwrite", help="replace an earlier run's results in --out (only those)"))
def _cmd_track(args: argparse.Namespace) -> int:
    from personkit.cli_objects import open_person_detector, open_predictor, pipeline_threads
    from personkit.data.times import parse_time
    from personkit.track.run import OUTPUTS, format_summary, track
    from personkit.track.tracker import parse_tracker_arg

    if Path(args.out).is_file():  # refused before the model is read, as an earlier run's
        raise NotADirectoryError(20, "--out names a file; give a folder", args.out)
    if not args.overwrite:  # results; those are replaced once tracking starts
        claim_outputs(args.out, OUTPUTS, False, "track")
    if args.start_time:  # an unreadable time, too
        parse_time(args.start_time, "--start-time", relative=False)
    threads = pipeline_threads(args)
    detector = open_person_detector(args, **threads)
    summary = track(
        open_predictor(args.model, args, **threads), args.source, args.out, detector=detector,
        detections=args.detections, mot_source=args.mot_source, tracker=args.tracker,
        embeddings=args.embeddings, seed=args.seed,
        tracker_kwargs=dict(map(parse_tracker_arg, args.tracker_arg)), evaluate=args.eval,
        gallery=args.gallery, match_threshold=args.match_threshold,
        progress=not args.no_progress, video_out=args.video_out, png_frames=args.png_frames,
        save_parts=args.save_parts, keypoints=args.keypoints, jsonl=args.jsonl,
        thumb_overlays=args.thumb_overlays, overwrite=args.overwrite,
        start_time=args.start_time)
    print(format_summary(summary, args.out), file=sys.stderr if args.jsonl == "-" else None)
    return 0


@command("study", "run a grid of trainings (a study spec), evaluate each with the official "
         "protocols and write tables and Fig. 5",
         opt("spec", help="study spec YAML, e.g. configs/study/quick.yaml"),
         shared("overrides", help="overrides for every row, after its own (section.key=value)"),
         opt("--out", required=True, help="study folder: results.jsonl, study.md, runs/, ..."),
         opt("--nproc", type=int, default=1, help="data-parallel processes per run (torchrun)"),
         opt("--report", default=None, help="also write the results into this Markdown file"),
         opt("--rows", default=None, help="comma-separated row names to run (default all)"),
         opt("--jobs", type=positive_int, default=None, help="--backend local: run up to N "
             "independent (row, seed) jobs at a time, each in a process with cores/N threads "
             "(docs/study.md; default 1)"),
         opt("--job", default=None, help=argparse.SUPPRESS),  # ROW:SEED, for --jobs
         opt("--backend", choices=("local", "ray"), default="local", help="where the jobs "
             "run: local (this machine, --jobs) or ray (each job a Ray task; needs "
             "personkit[cluster])"),
         opt("--address", default=None, help="--backend ray: join the Ray cluster at this "
             "address (auto, or the head's host:port) instead of starting a local Ray"),
         opt("--cpus-per-job", type=float, default=None, help="--backend ray: CPUs of each "
             "job, unless its row gives resources (default 1)"),
         opt("--gpus-per-job", type=float, default=None, help="--backend ray: GPUs of each "
             "job, unless its row gives resources (default 0)"),
         opt("--max-retries", type=int, default=None, help="--backend ray: retries of a job "
             "whose worker dies; it resumes from its newest checkpoint (default 3)"),
         shared("--no-progress", help="hide the progress bars"))
def _cmd_study(args: argparse.Namespace) -> int:
    from personkit.study import run_study
    from personkit.study.parallel import run_one_job

    if args.job:  # one job of `--jobs N`, started by the parent study (an internal option)
        run_one_job(args.spec, args.out, args.job, progress=not args.no_progress)
        return 0
    summary = run_study(args.spec, args.out, nproc=args.nproc, report=args.report,
                        progress=not args.no_progress, only=args.rows, jobs=args.jobs or 1,
                        overrides=args.overrides, ray=_ray_options(args))
    print(f"{summary['ran']} runs trained, {summary['skipped']} already done; "
          f"{summary['study_md']}")
    return 0


def _ray_options(args: argparse.Namespace):  # -> RayOptions | None (imported when used)
    """``study``'s Ray options (``--backend ray``); a Ray option with another back-end, or
    ``--jobs`` with Ray, is refused naming it."""
    given = [f"--{k.replace('_', '-')}" for k in ("address", "cpus_per_job", "gpus_per_job",
                                                   "max_retries") if getattr(args, k) is not None]
    if args.backend != "ray":
        if given:
            raise ValueError(f"{', '.join(given)} needs --backend ray")
        return None
    if args.jobs is not None:
        raise ValueError(f"--backend ray with --jobs {args.jobs}: Ray places the jobs; give "
                         f"each its resources with --cpus-per-job/--gpus-per-job instead")
    from personkit.study.ray_backend import RayOptions

    defaults = RayOptions.__dataclass_fields__
    return RayOptions(**{k: getattr(args, k) if getattr(args, k) is not None
                         else defaults[k].default for k in defaults})


from personkit import cli_data, cli_people  # noqa: E402, F401  (registered after the others)


def build_parser() -> argparse.ArgumentParser:
    """The ``personkit`` parser (:func:`personkit.cli_options.build_parser`)."""
    return _build_parser()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; ``key=value`` overrides may also come after the options
    (``personkit train CONFIG --out RUN train.lr=5e-4``), for subcommands that take them."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        argv[1:] = legacy_model_argv(argv[0], argv[1:], _subparser(parser, argv[0]))
    args, extra = parser.parse_known_args(argv)
    if extra:
        overrides = all(not x.startswith("-") and "=" in x for x in extra)
        if not hasattr(args, "overrides") or not overrides:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    return args


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``command``."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


#: The errors the CLI reports in one line, and their exit codes (1: a run that had to stop,
#: a source that broke mid-run (its results so far written), weights that do not fit, failed
#: study jobs; 2: bad input, settings, a missing extra, or a path that cannot be read or
#: written): (module, class name, code), most specific first.
EXIT_CODES = [("personkit.engine.trainer", "TrainingError", 1),
              ("personkit.models.weights", "WeightsError", 1),
              ("personkit.study.jobs", "StudyRunError", 1),
              ("personkit.track.run", "TrackingStopped", 1),
              ("builtins", "ValueError", 2), ("personkit.extras", "MissingExtraError", 2),
              ("builtins", "OSError", 2)]


def exit_code(error: BaseException) -> int | None:
    """``error``'s exit code (:data:`EXIT_CODES`), None for one the CLI does not report. Only
    modules already loaded are looked in (an error's class is loaded with its module), so a
    command that never imported torch does not import it to report an error."""
    for module, name, code in EXIT_CODES:
        kind = getattr(sys.modules.get(module), name, None)
        if kind is not None and isinstance(error, kind):
            return code
    return None


def main(argv: Sequence[str] | None = None) -> int:
    from personkit.data.urls import redact
    from personkit.runtime import apply_defaults

    apply_defaults()  # before any command imports torch (see personkit/runtime.py)
    args = parse_args(argv)
    if getattr(args, "verbose", False):
        os.environ["PERSONKIT_VERBOSE"] = "1"  # read by personkit.extras.quiet
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"personkit {args.command}: interrupted; {RESUME.get(args.command, 'stopped')}",
              file=sys.stderr)
        return 130
    except Exception as e:
        code = exit_code(e)
        if code is None:
            raise
        message = (f"{e.filename}: {e.strerror or e}" if isinstance(e, OSError)  # PATH: why
                   and e.filename is not None else str(e))
        print(f"personkit {args.command}: error: {redact(message)}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
