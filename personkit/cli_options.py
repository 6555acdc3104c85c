"""The command line's vocabulary: the registry of subcommands and their parser (defaults shown
in ``--help``), the options several subcommands share (one spelling, one meaning, one default
everywhere), argument types, what ``--out`` names, and the old spellings that still work for
a release with a deprecation message. ``tests/test_cli_args.py`` checks that every subcommand
using a shared option gives it the same default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from personkit.data.constants import DETECTOR_SCORE

Option = tuple[tuple[str, ...], dict[str, Any]]
Handler = Callable[[argparse.Namespace], int]
#: subcommand -> (help, options, handler); in --help order
COMMANDS: dict[str, tuple[str, list[Option], Handler]] = {}
#: How every subcommand that reads a model describes the argument.
MODEL_FILE = "run directory, .pt checkpoint or .safetensors export"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in ``--help``, except where its help says it (or it is None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or "default:" in (action.help or ""):
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


def build_parser(description: str) -> argparse.ArgumentParser:
    """The ``personkit`` parser: ``--version`` and every registered subcommand."""
    parser = argparse.ArgumentParser(prog="personkit", description=description)
    parser.add_argument("--version", action="version", version=f"personkit {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
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


#: The shared options. ``--flip`` is on wherever embeddings are made, as ``eval`` scores them.
SHARED: dict[str, dict[str, Any]] = {
    "--no-progress": {"action": "store_true", "help": "hide the progress bar"},
    "--device": {"default": "auto", "help": "auto (CUDA when a GPU is visible), cpu, cuda, "
                 "cuda:N"},
    "--batch-size": {"type": positive_int, "default": 32, "help": "crops per forward pass"},
    "--threads": {"type": int, "default": 0,
                  "help": "engine CPU threads (0: the engine's, one per core)"},
    "--engine": {"default": "torch", "choices": ("torch", "onnxruntime", "openvino"),
                 "help": "inference engine (onnxruntime/openvino export the checkpoint in "
                 "memory first; an exported .onnx or OpenVINO folder is used as is)"},
    "--heads": {"default": None, "help": "comma-separated subset of reid,attributes,pose,"
                "segmentation (default: all the model has)"},
    "--flip": {"action": argparse.BooleanOptionalAction, "default": True,
               "help": "average each ReID embedding with its mirror image's, as the "
               "evaluation protocol does (--no-flip: one pass, faster)"},
    "--detector": {"default": None, "help": "find the people: a torchvision detector name "
                   "(COCO weights from torch's cache; NAME:random for random weights) or an "
                   "ONNX detector file (YOLOv8/11, YOLOX, torchvision export)"},
    "--detector-score": {"type": float, "default": DETECTOR_SCORE,
                         "help": "minimum detector score of a person"},
    "--precision": {"default": "fp32", "choices": ("fp32", "bf16"),
                    "help": "the network's arithmetic: bf16 on the torch engine (autocast) or "
                    "OpenVINO (fastest where the CPU has AMX/AVX512-BF16; ONNX Runtime: fp32)"},
    "--merge-parts": {"action": "store_true", "help": "20 LIP part classes -> 5 merged"},
    "--mot-source": {"default": "auto", "choices": ("auto", "det", "gt"),
                     "help": "MOT boxes: det/det.txt, gt/gt.txt, or det when it exists"},
    "--calib-data": {"default": None, "help": "folder of images (any personkit dataset, "
                     "searched recursively) to calibrate --int8 on"},
    "--calib-size": {"type": positive_int, "default": 300, "help": "calibration crops"},
    "--resume": {"default": None, "help": "'auto' (newest valid checkpoint) or a path"},
    "--overwrite": {"action": "store_true", "help": "start a new run in a folder holding "
                    "another run's checkpoints, moving them aside (never deleted)"},
    "--seed": {"type": int, "default": 0, "help": "random seed"},
    "--verbose": {"action": "store_true", "help": "show the logs, warnings and progress bars "
                  "of NNCF, ONNX Runtime and OpenVINO (hidden by default)"},
    "overrides": {"nargs": "*", "metavar": "KEY=VALUE",
                  "help": "config overrides, section.key=value (also after the options)"},
}


def shared(flag: str, **changes: Any) -> Option:
    """The shared option ``flag`` (``changes``: another help text, never another meaning)."""
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
