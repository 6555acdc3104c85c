"""Helpers of the engine tests: tiny configs (ResNet-18 at 64×32, fake data) and CLI
subprocesses that run on one CPU thread, like the tests themselves (see ``conftest.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

#: Environment of the training subprocesses: one thread, like the tests themselves.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "PYTHONUNBUFFERED": "1"}


def tiny_config(train: dict[str, Any] | None = None, datasets: Sequence[dict] | None = None,
                **model: Any) -> dict[str, Any]:
    """A tiny four-task config dict: a PK ReID dataset and a pose + parts dataset (fake data)."""
    datasets = datasets or [
        {"name": "reid", "type": "fake", "tasks": ["reid", "id", "attributes"], "sampler": "pk",
         "pk_p": 4, "pk_k": 2, "input_size": [64, 32], "options": {"num_ids": 8,
                                                                    "images_per_id": 2}},
        {"name": "body", "type": "fake", "tasks": ["pose", "segmentation"], "batch_size": 4,
         "input_size": [64, 32], "options": {"num_ids": 6, "images_per_id": 2}},
    ]
    return {
        "model": {"backbone": {"name": "resnet10t", "norm": "group"}, "num_ids": 8,
                  "seg_classes": 5, "fpn_channels": 16, "seg_channels": 8,
                  "input_size": [64, 32], **model},
        "data": {"num_workers": 0, "train": list(datasets)},
        "loss": {"seg_warmup_steps": 0, "seg_top_k": 1.0},
        "train": {"iterations": 6, "lr": 1e-3, "schedule": {"type": "constant"},
                  "device": "cpu", "log_every": 1, "checkpoint_every": 2, **(train or {})},
    }


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def personkit_cmd(*args: str) -> list[str]:
    """``python -m personkit ARGS`` with this interpreter."""
    return [sys.executable, "-m", "personkit", *args]


def run_personkit(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess (one thread); fails the test with its output on error."""
    proc = subprocess.run(personkit_cmd(*args), cwd=cwd, env=SUBPROCESS_ENV, timeout=timeout,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"personkit {' '.join(args)} failed:\n{proc.stderr[-4000:]}"
    return proc


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    import json

    lines = (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]
