"""The command line's vocabulary: the registry of subcommands and their parser (defaults shown
in ``--help``), the options several subcommands share (one spelling, one meaning, one default
everywhere), argument types, what ``--out`` names, and the old spellings that still work for
a release with a deprecation message. ``tests/test_cli_args.py`` checks that every subcommand
using a shared option gives it the same default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from personkit.data.constants import DETECTOR_SCORE

Option = tuple[tuple[str, ...], dict[str, Any]]
Handler = Callable[[argparse.Namespace], int]
#: subcommand -> (help, options, handler); in --help order
COMMANDS: dict[str, tuple[str, list[Option], Handler]] = {}
#: How every subcommand that reads a model describes the argument.
MODEL_FILE = "run directory, .pt checkpoint or .safetensors export"
#: The spellings of the model option, the same on every subcommand that runs a model.
MODEL_FLAGS = ("-m", "--model")
#: Subcommands that took the model as their first positional argument before issue 35, and
#: how many positional arguments that old form had (it still works for a release).
LEGACY_MODEL_POSITIONAL = {"predict": 2, "track": 2, "eval": 1, "export": 1, "serve": 1,
                           "bench": 1}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in ``--help``, except where its help says it (or it is None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or "default:" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action) or ""


def command(name: str, help: str, *options: Option) -> Callable[[Handler], Handler]:
    """Register the decorated function as subcommand ``name`` with ``options``."""
    def register(func: Handler) -> Handler:
        COMMANDS[name] = (help, list(options), func)
        return func
    return register


def package_version() -> str:
    """personkit's installed version (``(not installed)`` in a bare source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("personkit")
    except PackageNotFoundError:
        return "(not installed)"


#: ``personkit --help``: what the tool does, then the commands, then three first commands.
USAGE = """One network for people: a re-identification embedding, attributes (gender, age,
clothing, colours, bags), 16 body joints and a body-part map for every person, in one
forward pass. Train it, run it on crops, images or video, track and index the people seen,
search them, serve them over HTTP."""
EXAMPLES = """examples:
  personkit demo --out runs/demo                  # synthesise data, train, evaluate (~6 min)
  personkit track --model runs/demo/run data/mot/crossing --out runs/crossing --video-out
  personkit index runs/people runs/crossing --model runs/demo/run
  personkit search runs/people --where "gender=female backpack=yes"

`personkit COMMAND --help` lists a command's options; the options several commands share
mean the same everywhere (docs/cli.md)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``personkit`` parser: ``--version`` and every registered subcommand."""
    parser = argparse.ArgumentParser(prog="personkit", description=USAGE, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"personkit {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands")
    for name, (text, options, func) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)
        for flags, kwargs in options:
            p.add_argument(*flags, **kwargs)
        p.set_defaults(func=func)
    return parser


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def comma_list(text: str | None) -> list[str] | None:
    """A comma-separated option (``--heads reid,pose``) as a list; None when not given."""
    return text.split(",") if text else None


def opt(*flags: str, **kwargs: Any) -> Option:
    """One option of a subcommand (``add_argument``'s arguments)."""
    return flags, kwargs


#: What ``--detector`` accepts, in every subcommand's help.
DETECTOR_FORMS = ("a detector of one of three kinds: a torchvision detector name (COCO weights "
                  "from torch's cache; NAME:random for random weights), an ONNX detector file "
                  "(YOLOv5/8/11, YOLOX, torchvision export) or a personkit detector run "
                  "(personkit train-detector's --out)")
#: The shared options. ``--flip`` is on wherever embeddings are made, as ``eval`` scores them.
SHARED: dict[str, dict[str, Any]] = {
    "--no-progress": {"action": "store_true", "help": "hide the progress bar"},
    "--device": {"default": "auto", "help": "auto (CUDA when a GPU is visible), cpu, cuda, "
                 "cuda:N"},
    "--batch-size": {"type": positive_int, "default": 32, "help": "crops per forward pass"},
    "--threads": {"type": int, "default": 0,
                  "help": "engine CPU threads (0: the engine's, one per core; track and "
                          "index with --detector: half the cores each for it and the "
                          "network, which run side by side)"},
    "--engine": {"default": "auto", "choices": ("auto", "torch", "onnxruntime", "openvino"),
                 "help": "inference engine: auto picks the fastest this machine allows that "
                 "personkit export --auto checked for the model (OpenVINO bf16 or int8, ONNX "
                 "Runtime fp32; else eager torch, as on a GPU) and says why; or name one "
                 "(onnxruntime/openvino export the checkpoint in memory; an exported file is "
                 "used as is)"},
    "--heads": {"default": None, "help": "comma-separated subset of reid,attributes,pose,"
                "segmentation (default: all the model has)"},
    "--flip": {"action": argparse.BooleanOptionalAction, "default": True,
               "help": "average each ReID embedding with its mirror image's, as the "
               "evaluation protocol does (--no-flip: one pass, faster)"},
    "--detector": {"default": None, "help": "find the people with " + DETECTOR_FORMS},
    "--detector-score": {"type": float, "default": DETECTOR_SCORE,
                         "help": "minimum detector score of a person"},
    "--precision": {"default": "fp32", "choices": ("fp32", "bf16"),
                    "help": "the network's arithmetic: bf16 on the torch engine (autocast) or "
                    "OpenVINO (fastest where the CPU has AMX/AVX512-BF16; ONNX Runtime: fp32)"},
    "--merge-parts": {"action": "store_true", "help": "20 LIP part classes -> 5 merged"},
    "--mot-source": {"default": "auto", "choices": ("auto", "det", "gt"),
                     "help": "MOT boxes: det/det.txt, gt/gt.txt, or det when it exists"},
    "--start-time": {"default": None, "metavar": "TIME",
                     "help": "when a file's or folder's first frame was captured, ISO-8601 "
                     "(UTC without a zone): what its people's times count from (default: a "
                     "video's creation_time metadata, else the file's or folder's "
                     "modification time; a stream: the wall clock)"},
    "--calib-data": {"default": None, "help": "folder of images (any personkit dataset, "
                     "searched recursively) to calibrate --int8 on"},
    "--calib-size": {"type": positive_int, "default": 300, "help": "calibration crops"},
    "--resume": {"default": None, "help": "'auto' (newest valid checkpoint) or a path"},
    "--overwrite": {"action": "store_true", "help": "replace the results an earlier run "
                    "left in --out (only those files; without it they are refused)"},
    "--seed": {"type": int, "default": 0, "help": "random seed"},
    "--verbose": {"action": "store_true", "help": "show the logs, warnings and progress bars "
                  "of NNCF, ONNX Runtime and OpenVINO (hidden by default)"},
    "overrides": {"nargs": "*", "metavar": "KEY=VALUE",
                  "help": "config overrides, section.key=value (also after the options)"},
}


#: The shared options whose default differs on one subcommand, each for a stated reason
#: (docs/cli.md's table shows it beside the shared default): ``eval --engine`` is eager torch,
#: the protocols' reference that other engines are scored against; ``auto`` means nothing
#: there.
OWN_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "--engine": {"eval": {"default": "torch", "choices": ("torch", "onnxruntime", "openvino")}}}


def model_option(required: bool = True, help: str = MODEL_FILE) -> Option:
    """``-m/--model``: the model, spelled the same on every subcommand that runs one."""
    return MODEL_FLAGS, {"required": required, "default": None, "metavar": "MODEL",
                         "help": help}


def network_options(*, flip: bool = True, command: str | None = None,
                    **helps: str) -> list[Option]:
    """The options of every subcommand that runs the network, with their shared meanings
    (``helps``: another help text for one of them, keyed by its name without dashes;
    ``command``: the subcommand, for its :data:`OWN_DEFAULTS`)."""
    flags = ["--device", "--engine", "--threads", "--precision", "--batch-size"]
    return [shared(f, **OWN_DEFAULTS.get(f, {}).get(command or "", {}),
                   **({"help": helps[f[2:]]} if f[2:] in helps else {}))
            for f in [*flags, *(["--flip"] if flip else [])]]


def shared(flag: str, **changes: Any) -> Option:
    """The shared option ``flag`` (``changes``: another help text, or the subcommand's
    :data:`OWN_DEFAULTS` entry; never another meaning)."""
    return (flag,), {**SHARED[flag], **changes}


def out_file(out: str | None, name: str) -> Path | None:
    """``--out FOLDER`` -> ``FOLDER/name``; the old ``--out FILE.json`` still works, with a
    deprecation message."""
    if out and out.endswith(".json") and not Path(out).is_dir():
        print(f"personkit: --out {out} (a file) is deprecated; --out takes a folder and writes "
              f"{name} into it", file=sys.stderr)
        return Path(out)
    return Path(out) / name if out else None


def write_out_json(path: Path | None, content: Any) -> None:
    """``content`` as JSON in ``path`` (:func:`out_file`; nothing when None), saying so."""
    from personkit.checkpoint import write_json

    if path:
        print(f"wrote {write_json(path, content)}")


class _Deprecated(argparse.Action):
    """An old spelling: does what ``apply`` says and prints what to write instead."""

    def __init__(self, *args: Any, instead: str, apply: Any, **kwargs: Any) -> None:
        self.instead, self.apply = instead, apply
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option: str | None = None) -> None:
        print(f"personkit: {option} is deprecated and will be removed in the next release; "
              f"use {self.instead}", file=sys.stderr)
        self.apply(namespace, values)


def deprecated(flag: str, instead: str, apply: Any, takes_value: bool = False) -> Option:
    """An old spelling of ``instead`` (kept for a release): ``apply(namespace, value)``."""
    return (flag,), {"action": _Deprecated, "instead": instead, "apply": apply,
                     "nargs": None if takes_value else 0, "help": argparse.SUPPRESS}


def _positionals(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[int]:
    """Indices of the positional words of a subcommand's ``argv`` (its options' values
    skipped, as ``parser`` would)."""
    takes_value = {flag for action in parser._actions for flag in action.option_strings
                   if action.nargs != 0}
    found, i = [], 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return found + list(range(i + 1, len(argv)))
        if word.startswith("-") and len(word) > 1:
            i += word in takes_value  # its value is the next word
        else:
            found.append(i)
        i += 1
    return found


def legacy_model_argv(command: str, argv: list[str],
                      parser: argparse.ArgumentParser) -> list[str]:
    """``argv`` of ``command`` (after its name) with the old positional model
    (``personkit predict RUN INPUT``) moved to ``--model RUN``, saying so; ``eval``'s old
    ``--model EXPORT`` becomes ``--export EXPORT`` in that old form."""
    if command not in LEGACY_MODEL_POSITIONAL:
        return argv
    given = any(w in MODEL_FLAGS or w.startswith("--model=") for w in argv)
    words = [i for i in _positionals(argv, parser) if "=" not in argv[i]]  # not overrides
    if len(words) != LEGACY_MODEL_POSITIONAL[command] or (given and command != "eval"):
        return argv
    argv = list(argv)
    if given:  # eval RUN --model EXPORT (before issue 35)
        argv = ["--export" if w in MODEL_FLAGS else w.replace("--model=", "--export=", 1)
                for w in argv]
    model = argv.pop(words[0])
    export = " --export EXPORT (the old --model EXPORT)" if given else ""
    print(f"personkit: `personkit {command} MODEL ...` is deprecated and will be removed in the "
          f"next release; write `personkit {command} --model {model}{export} ...`",
          file=sys.stderr)
    return [*argv, "--model", model]


def vocabulary_table() -> str:
    """docs/cli.md's table of the shared options: option, meaning, default and the
    subcommands that take it (from the registry, so the docs cannot drift from the parsers)."""
    used: dict[str, list[str]] = {}
    for name, (_, options, _) in COMMANDS.items():
        for flags, _ in options:
            for flag in flags:
                if flag in SHARED or flag == "--model":
                    used.setdefault(flag, []).append(name)
    rows = ["| option | meaning | default | commands |", "|---|---|---|---|"]
    spelled = {"--model": {"help": f"the model: {MODEL_FILE}", "default": None}, **SHARED}
    for flag, spec in spelled.items():
        if flag in used:
            default = spec.get("default")
            shown = "-" if default is None or spec.get("action") == "store_true" else (
                f"`{default}`" if default != "" else "`\"\"`")
            shown += "".join(f" ({name}: `{own['default']}`)"
                             for name, own in OWN_DEFAULTS.get(flag, {}).items())
            label = "`-m`, `--model`" if flag == "--model" else f"`{flag}`"
            meaning = spec["help"].replace("|", "\\|")
            rows.append(f"| {label} | {meaning} | {shown} | {', '.join(used[flag])} |")
    return "\n".join(rows)
