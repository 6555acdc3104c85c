"""Tracking metrics with TrackEval, the official MOT Challenge kit (Luiten et al., IJCV 2021):
HOTA (Luiten et al.), CLEAR MOT (MOTA, ID switches; Bernardin & Stiefelhagen 2008) and the
identity metrics (IDF1; Ristani et al. 2016), computed from the MOT folder layout so that the
MOT16/17 preprocessing (distractor classes, the ``consider`` flag) applies as on the benchmark.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from personkit.extras import require

#: Headline numbers, as in MOT Challenge tables (HOTA averaged over its IoU thresholds).
HEADLINE = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "MT", "ML", "FP", "FN")


def evaluate_mot(gt_file: str | Path, results_file: str | Path, n_frames: int,
                 seq_name: str = "seq") -> dict[str, float]:
    """HOTA, DetA, AssA, MOTA, IDF1, IDSW, ... of one sequence's results against ``gt.txt``."""
    trackeval = require("trackeval")
    gt_file, results_file = Path(gt_file), Path(results_file)
    for f in (gt_file, results_file):
        if not f.is_file():
            raise FileNotFoundError(f"tracking evaluation input not found: {f}")
    with tempfile.TemporaryDirectory(prefix="personkit-trackeval-") as tmp:
        gt_dir = Path(tmp) / "gt" / seq_name / "gt"
        res_dir = Path(tmp) / "trackers" / "personkit" / "data"
        gt_dir.mkdir(parents=True)
        res_dir.mkdir(parents=True)
        shutil.copy(gt_file, gt_dir / "gt.txt")
        shutil.copy(results_file, res_dir / f"{seq_name}.txt")
        dataset = trackeval.datasets.MotChallenge2DBox({
            "GT_FOLDER": str(Path(tmp) / "gt"), "TRACKERS_FOLDER": str(Path(tmp) / "trackers"),
            "TRACKERS_TO_EVAL": ["personkit"], "SKIP_SPLIT_FOL": True,
            "SEQ_INFO": {seq_name: int(n_frames)}, "PRINT_CONFIG": False, "BENCHMARK": "MOT17"})
        evaluator = trackeval.Evaluator({
            "USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False,
            "TIME_PROGRESS": False, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False,
            "PLOT_CURVES": False, "LOG_ON_ERROR": None, "BREAK_ON_ERROR": True,
            "DISPLAY_LESS_PROGRESS": True})
        quiet = {"PRINT_CONFIG": False}
        metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(quiet),
                   trackeval.metrics.Identity(quiet)]
        with contextlib.redirect_stdout(io.StringIO()):  # TrackEval prints its progress
            res, _ = evaluator.evaluate([dataset], metrics)
    seq = res["MotChallenge2DBox"]["personkit"][seq_name]["pedestrian"]
    out: dict[str, float] = {}
    for group in ("HOTA", "CLEAR", "Identity"):
        for key, value in seq[group].items():
            name = key.removeprefix("CLR_")
            if name in HEADLINE:
                out[name] = float(np.mean(value)) if np.ndim(value) else float(value)
    return {k: out[k] for k in HEADLINE if k in out}


def format_metrics(metrics: dict[str, Any]) -> str:
    """One line: fractions as percentages, counts as integers."""
    return "  ".join(f"{k} {v * 100:.1f}" if k in ("HOTA", "DetA", "AssA", "MOTA", "IDF1")
                     else f"{k} {int(v)}" for k, v in metrics.items())
