"""Run directories: who owns the checkpoints in ``RUN_DIR/checkpoints``.

Every run has a ``run_id`` (a random hex string), stored in ``RUN_DIR/run.json`` and in each
of its checkpoints; a resumed run keeps the id of the checkpoint it continues. A fresh start
(no ``--resume``, or ``--resume PATH`` of another run) in a folder holding another run's
checkpoints is refused, unless ``--overwrite`` moves them (and that run's
``model.safetensors``) aside into ``checkpoints.old-<run id>/``; nothing is deleted.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from personkit.checkpoint import checkpoint_run_id, list_checkpoints, write_json

RUN_FILE = "run.json"


class RunDirError(ValueError):
    """A run directory that cannot be used as asked; the message says what to pass instead."""


def check_out_dir(out: str | Path) -> Path:
    """Check that ``--out`` can be created and take files, without creating it; a
    :class:`RunDirError` naming it if it is a file, is under a file, or cannot be written
    (read-only, no permission)."""
    out = Path(out)
    target = out.absolute()
    existing = next(p for p in [target, *target.parents] if p.exists())
    if not existing.is_dir():
        what = "is a file" if existing == target else f"is under {existing}, which is a file"
        raise RunDirError(f"--out {out} {what}; pass a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        where = "" if existing == target else f" (in {existing})"
        raise RunDirError(f"--out {out} cannot be written{where} ({e.strerror or e}); pass a "
                          f"folder you can write") from None
    return out


def read_run_file(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_run_file(run_dir: str | Path, run_id: str, **info: Any) -> None:
    """``RUN_DIR/run.json``: the run id and how this invocation started (atomic write)."""
    path = Path(run_dir) / RUN_FILE
    record = {"run_id": run_id, **info, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(path, record)


def _owner(run_dir: Path, files: list[Path]) -> str:
    """The run id of the checkpoints in ``files`` (newest readable), else run.json's."""
    for path in reversed(files):
        if (found := checkpoint_run_id(path)) is not None:
            return found
    return (read_run_file(run_dir) or {}).get("run_id") or "unknown"


def claim_run_dir(run_dir: str | Path, resume: str | None, overwrite: bool) -> str | None:
    """Check (and with ``overwrite`` clear) ``run_dir`` for a run started with ``resume``
    (None, "auto" or a checkpoint path), before anything is written. Returns ``resume``,
    moved along if it was inside the folder moved aside."""
    run_dir = Path(run_dir)
    if resume == "auto":
        if overwrite:
            raise RunDirError("--overwrite starts a new run, --resume auto continues the one in "
                              "the run dir: pass only one")
        return resume
    folder = run_dir / "checkpoints"
    files = list_checkpoints(folder)
    if not files:
        return resume
    resumed_id = checkpoint_run_id(resume) if resume else None
    if resumed_id is not None and all(checkpoint_run_id(p) == resumed_id for p in files):
        return resume  # --resume PATH of the run these checkpoints belong to
    owner = _owner(run_dir, files)
    if not overwrite:
        start = f"--resume {resume}" if resume else "a new run"
        raise RunDirError(
            f"{run_dir} holds checkpoints of another run (run id {owner}, up to "
            f"{files[-1].name}); refusing to start {start} there. Pass --resume auto to "
            f"continue that run, --overwrite to move its checkpoints aside into "
            f"{folder.name}.old-{owner}/, or another --out")
    return _move_aside(run_dir, owner, resume)


def _move_aside(run_dir: Path, owner: str, resume: str | None) -> str | None:
    target = run_dir / f"checkpoints.old-{owner}"
    n = 1
    while target.exists():
        n += 1
        target = run_dir / f"checkpoints.old-{owner}-{n}"
    os.replace(run_dir / "checkpoints", target)
    if (run_dir / "model.safetensors").is_file():
        os.replace(run_dir / "model.safetensors", target / "model.safetensors")
    print(f"moved the checkpoints of run {owner} aside to {target}", file=sys.stderr)
    if resume is not None:
        try:
            return str(target / Path(resume).resolve().relative_to(
                (run_dir / "checkpoints").resolve()))
        except ValueError:
            return resume
    return resume
