"""The one place where the command line's options become objects: the :class:`Predictor` and
the person detector that ``predict``, ``track``, ``index``, ``search`` and ``serve`` hand to
their pipelines, built once per command. The pipelines take these objects and never read an
option; a subcommand passes only the options it declares."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from personkit.cli_options import comma_list

if TYPE_CHECKING:
    from personkit.inference.predictor import Predictor
    from personkit.models.detector import DetectorBase

#: The shared options that configure the network (their ``argparse`` names) -> the keyword
#: of :meth:`~personkit.inference.predictor.Predictor.from_checkpoint` each one sets.
PREDICTOR_OPTIONS = {"device": "device", "heads": "heads", "engine": "engine",
                     "threads": "threads", "flip": "flip_tta", "batch_size": "batch_size",
                     "merge_parts": "merge_parts", "precision": "precision"}


def predictor_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of ``Predictor.from_checkpoint`` that ``args`` give (``--heads`` as a
    list; ``--threads 0``, the engine's own count, as None)."""
    given = {key: getattr(args, name) for name, key in PREDICTOR_OPTIONS.items()
             if hasattr(args, name)}
    if "heads" in given:
        given["heads"] = comma_list(given["heads"])
    if "threads" in given:
        given["threads"] = given["threads"] or None
    return given


def open_predictor(model: str, args: argparse.Namespace, **changes: Any) -> Predictor:
    """The predictor of ``model`` (a run directory, checkpoint or export) as ``args``
    configure it; ``changes``: keywords the subcommand sets itself. ``--engine auto`` (the
    default) chooses the engine and prints its choice on stderr
    (:func:`personkit.deploy.auto.open_predictor`)."""
    from personkit.deploy.auto import open_predictor as open_on_engine

    return open_on_engine(model, **{**predictor_options(args), **changes})


def open_person_detector(args: argparse.Namespace, device: str | None = None,
                         threads: int | None = None) -> DetectorBase | None:
    """``--detector`` with ``--detector-score`` (and ``--threads`` where the subcommand has
    it, else ``threads``) on ``device`` (default: ``--device``, resolved); None without
    ``--detector``."""
    if args.detector is None:
        return None
    from personkit.inference.detectors import open_detector
    from personkit.runtime import resolve_device

    return open_detector(args.detector, device or resolve_device(args.device).type,
                         args.detector_score, getattr(args, "threads", 0) or threads)


def pipeline_threads(args: argparse.Namespace) -> dict[str, int]:
    """The engines' threads of a tracking pipeline with a detector: when ``--threads`` is
    not given, half the cores each (at least one), since the detector (in the frame-reading
    thread) and the person network run side by side (:func:`personkit.track.io.prefetched`;
    on 2 cores one thread each gave 33.5 frames/s against 31.1 with two each:
    benchmarks/RESULTS.md); else nothing (``--threads``, or no detector: one stage)."""
    if getattr(args, "threads", 0) or getattr(args, "detector", None) is None:
        return {}
    from personkit.runtime import cpu_count

    return {"threads": max(1, cpu_count() // 2)}


def index_model(model: str | None, index: str | None) -> str:
    """The model a command on ``index`` runs: ``model`` when given, else the one the index
    records (``index.json``'s ``model_path``), read without opening its store.

    Raises:
        ValueError: neither is known (says to give ``--model``).
    """
    if model:
        return model
    recorded = None
    if index is not None:
        from pathlib import Path

        from personkit.index.people import read_info

        info = read_info(Path(index))
        recorded = info.model_path if info is not None else None
    if not recorded:
        where = f"{index} is not an index yet" if index else "no --index given"
        raise ValueError(f"give the model with --model ({where}, so it records none)")
    return recorded
