"""Checkpoint files: one dict per file, written atomically, the newest N kept.

A checkpoint is written to a temp file in the same folder, fsynced and renamed over its final
name, so a process killed at any moment leaves either the complete file or none. Temp files
of a killed writer are removed by the next save. Loading uses ``weights_only=True``; a file
that does not load (truncated, corrupt) is skipped with a warning by :func:`load_latest_valid`.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

_NAME = re.compile(r"^step_(\d+)\.pt$")


def save_checkpoint(state: dict[str, Any], directory: str | Path, step: int, keep: int = 3) -> Path:
    """Write ``state`` to ``directory/step_XXXXXXXX.pt`` via a temp file and a rename."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".tmp_*.pt"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    path = directory / f"step_{step:08d}.pt"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint files in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code from pickles)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_latest_valid(directory: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; corrupt ones are skipped with a warning."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path)
        except Exception as e:  # noqa: BLE001 - any unreadable file is skipped
            warnings.warn(f"skipping unreadable checkpoint {path}: {e}", stacklevel=2)
    return None


def save_weights(model: torch.nn.Module, path: str | Path, config: dict[str, Any],
                 meta: dict[str, Any]) -> Path:
    """Write inference weights as safetensors; the config and model metadata go in its header."""
    import json

    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"config": json.dumps(config), "meta": json.dumps(meta)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and ``{"config", "meta"}`` of a file written by :func:`save_weights`."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    if "config" not in header:
        raise ValueError(f"{path} has no personkit config in its header (not a personkit export)")
    return load_file(str(path)), {k: json.loads(v) for k, v in header.items()}
