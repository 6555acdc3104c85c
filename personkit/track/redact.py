"""Taking tracks out of a ``personkit track`` output folder (issue 37: a person forgotten from a
people index leaves the tracking output the index keeps in ``INDEX/tracks/`` too).

A track's data lives in ``results.txt`` (its boxes), ``tracks.json`` (its summary),
``thumbs/ID.jpg`` and ``thumbs/ID_overlay.jpg`` (its pictures), ``gallery.json`` and
``track_embeddings.npy`` (its embedding, one row per bank entry in the same order); those are
rewritten without it. ``frames/``, ``parts/`` and ``video.mp4`` show every person of every
frame and cannot be cut per track: they are deleted.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Collection
from pathlib import Path

import numpy as np

from personkit.checkpoint import atomic_file, write_json, write_text_atomic

#: What shows every person at once (removed whole when any track is taken out).
WHOLE = ("frames", "parts", "video.mp4")


def remove_tracks(out_dir: str | Path, track_ids: Collection[int]) -> list[Path]:
    """Rewrite the output folder ``out_dir`` without the tracks ``track_ids`` (module
    docstring); returns the files rewritten or deleted."""
    out_dir, ids = Path(out_dir), {int(t) for t in track_ids}
    if not ids:
        return []
    touched = [*_rewrite_results(out_dir / "results.txt", ids),
               *_rewrite_tracks_json(out_dir / "tracks.json", ids),
               *_rewrite_bank(out_dir, ids)]
    for tid in sorted(ids):
        for name in (f"{tid:04d}.jpg", f"{tid:04d}_overlay.jpg"):
            if (path := out_dir / "thumbs" / name).is_file():
                path.unlink()
                touched.append(path)
    for name in WHOLE:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
            touched.append(path)
        elif path.is_file():
            path.unlink()
            touched.append(path)
    return touched


def _rewrite_results(path: Path, ids: set[int]) -> list[Path]:
    """``results.txt`` (MOT rows ``frame,id,...``) without the rows of ``ids``."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if _row_track(line) not in ids]
    if len(kept) == len(lines):
        return []
    write_text_atomic(path, "".join(line + "\n" for line in kept))
    return [path]


def _row_track(line: str) -> int | None:
    parts = line.split(",")
    try:
        return int(float(parts[1])) if len(parts) > 1 else None
    except ValueError:
        return None


def _rewrite_tracks_json(path: Path, ids: set[int]) -> list[Path]:
    if not path.is_file():
        return []
    content = json.loads(path.read_text(encoding="utf-8"))
    tracks = content.get("tracks") or []
    kept = [t for t in tracks if int(t.get("track_id", -1)) not in ids]
    if len(kept) == len(tracks):
        return []
    write_json(path, {**content, "tracks": kept}, indent=1, end="")
    return [path]


def _rewrite_bank(out_dir: Path, ids: set[int]) -> list[Path]:
    """``gallery.json`` and ``track_embeddings.npy`` (row ``i``: the bank's entry ``i``)
    without the entries of ``ids``."""
    bank_path, emb_path = out_dir / "gallery.json", out_dir / "track_embeddings.npy"
    if not bank_path.is_file():
        return []
    bank = json.loads(bank_path.read_text(encoding="utf-8"))
    entries = bank.get("entries") or []
    keep = [i for i, e in enumerate(entries) if int(e.get("track_id", -1)) not in ids]
    if len(keep) == len(entries):
        return []
    write_json(bank_path, {**bank, "entries": [entries[i] for i in keep]}, indent=None, end="")
    touched = [bank_path]
    if emb_path.is_file():
        emb = np.load(emb_path)
        with atomic_file(emb_path, suffix=".npy") as tmp:
            np.save(tmp, emb[keep] if len(emb) == len(entries) else emb[:0])
        touched.append(emb_path)
    return touched
