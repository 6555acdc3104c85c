"""People into an index (``personkit index``): from the output folder of ``personkit track``,
from anything ``track`` reads (a MOT sequence, a video, a stream; tracked into the index's
``tracks/`` folder first, with a detector when given), or from a folder of person crops.

A track's entry holds its merged attributes, its mean embedding (the bank ``track`` writes in
``gallery.json``), its frame span and times (``first_time``/``last_time`` of ``tracks.json``:
seconds from the source's first frame, from presentation timestamps where the source has them;
``(frame - 1) / frame rate`` for an older ``tracks.json`` without them) and its thumbnail (the
track's best view, ``thumbs/ID.jpg``). When the tracked source is a MOT sequence folder with
ground truth (``img1/`` and ``gt/gt.txt``), each track is given the identity its boxes overlap
most (IoU >= 0.5 on at least half of its frames), for
:meth:`~personkit.index.people.PeopleIndex.evaluate`.

Track folders travel between machines, so a track folder is read only from inside itself:
``tracks.json``, ``gallery.json`` and every thumbnail must resolve (symbolic links followed)
to a file inside the resolved folder; anything else (``/etc/passwd``, ``../../x.jpg``, a link
out) is a ValueError naming the file and the path. Ground truth is read only from a MOT
sequence folder: the one ``index`` tracked, or the ``source_path`` of ``tracks.json`` when it
is one.

Sources are named uniquely (:func:`source_names`); a source whose tracking ended at a broken
frame (``tracks.json``'s ``ended``) is indexed with what was tracked, with a warning.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from personkit.data.mot import is_mot_sequence
from personkit.index.entries import Entry, IndexInfo
from personkit.index.people import DEFAULT_BACKEND, PeopleIndex
from personkit.inference.predictor import Predictor
from personkit.inference.sources import check_name, shown_path
from personkit.track.merge import l2_normalise

#: Files of a ``personkit track`` output folder that indexing reads.
TRACK_FILES = ("tracks.json", "gallery.json")


def index_info(predictor: Predictor, model_path: str | None = None,
               backend: str = DEFAULT_BACKEND, qdrant_url: str | None = None) -> IndexInfo:
    """The :class:`IndexInfo` of an index of ``predictor``'s people."""
    if predictor.model_id is None or "reid" not in predictor.heads \
            or "attributes" not in predictor.heads:
        raise ValueError("an index needs a model with ReID and attribute heads, both on")
    extra: dict[str, Any] = {"backend": backend}
    if qdrant_url:
        extra["qdrant_url"] = qdrant_url
    dim = int(predictor.meta.embedding_dim)
    return IndexInfo(predictor.model_id, dim,
                     {k: list(v) for k, v in predictor.meta.attributes.items()},
                     predictor.calibration, model_path, extra)


def is_track_output(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``personkit track``."""
    return all((Path(path) / name).is_file() for name in TRACK_FILES)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable ({e})") from None


def _inside(path: Path, root: Path, where: Path, what: str) -> Path:
    """``path`` resolved (links followed) when it lies inside ``root`` (a resolved folder);
    else a ValueError naming ``where`` (the file that names it), ``what`` and the path."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"{shown_path(where)}: {what} {shown_path(path)} is outside the track "
                         f"folder {shown_path(root)} (it resolves to {shown_path(resolved)}); "
                         f"personkit index reads files only from inside the folder it indexes")
    return resolved


def _track_json(track_dir: Path, name: str) -> Any:
    """``tracks.json`` or ``gallery.json`` of a track folder, from inside it."""
    return _read_json(_inside(track_dir / name, track_dir.resolve(), track_dir, name))


def _thumbnail(track_dir: Path, track: dict[str, Any]) -> bytes:
    """The JPEG bytes of a track's thumbnail, read only from inside ``track_dir``."""
    where = track_dir / "tracks.json"
    rel = track.get("thumbnail")
    if not rel:
        raise ValueError(f"{where}: track {track['track_id']} has no thumbnail (written by an "
                         f"older personkit track); track again")
    if not isinstance(rel, str):
        raise ValueError(f"{where}: track {track['track_id']}: thumbnail must be a path, "
                         f"got {rel!r}")
    return _inside(track_dir / rel, track_dir.resolve(), where,
                   f"track {track['track_id']}'s thumbnail").read_bytes()


def _times(track: dict[str, Any], fps: float) -> tuple[float, float]:
    """A track's first and last time: ``tracks.json``'s (from presentation timestamps), or
    ``(frame - 1) / fps`` for a ``tracks.json`` written before they were recorded."""
    if track.get("first_time") is not None and track.get("last_time") is not None:
        return float(track["first_time"]), float(track["last_time"])
    return (int(track["first_frame"]) - 1) / fps, (int(track["last_frame"]) - 1) / fps


def _mot_folder(path: Any) -> Path | None:
    """``path`` when it is a MOT sequence folder with ground truth (``img1/`` and
    ``gt/gt.txt``), else None."""
    if not path or not isinstance(path, str):
        return None
    folder = Path(path)
    ok = (folder / "img1").is_dir() and (folder / "gt" / "gt.txt").is_file()
    return folder if ok else None


def track_entries(track_dir: str | Path, info: IndexInfo, source: str | None = None,
                  seq_dir: str | Path | None = None) -> tuple[str, list[Entry]]:
    """The entries of a ``personkit track`` output folder (``source``: the camera name, by
    default the tracked sequence's name). Every file is read from inside the folder (module
    docstring); ground-truth identities come from ``seq_dir`` (the MOT sequence that was
    tracked) or else the ``source_path`` of ``tracks.json`` when that is a MOT sequence folder.

    Raises:
        ValueError: the folder is from another model (naming both), lacks thumbnails (an older
            ``track``), names a file outside itself, or is malformed (naming the file).
    """
    source, entries, _ = _track_folder(Path(track_dir), info, source, seq_dir)
    return source, entries


def _track_folder(track_dir: Path, info: IndexInfo, source: str | None,
                  seq_dir: str | Path | None) -> tuple[str, list[Entry], str]:
    """:func:`track_entries`, and why its tracking ended early (``tracks.json``'s ``ended``;
    "" when it ran to the end)."""
    tracks = _track_json(track_dir, "tracks.json")
    bank = _track_json(track_dir, "gallery.json")
    if bank.get("model") != info.model:
        raise ValueError(f"{track_dir} was tracked with model {bank.get('model') or 'unknown'}, "
                         f"the index holds model {info.model}: their embedding spaces differ; "
                         f"track it again with the index's model")
    source = check_name(source or str(tracks.get("sequence") or track_dir.name),
                        track_dir / "tracks.json", "name the source with --name")
    fps = float(tracks.get("frame_rate") or 0) or 1.0
    by_id = {int(t["track_id"]): t for t in tracks["tracks"]}
    gt_dir = Path(seq_dir) if seq_dir is not None else _mot_folder(tracks.get("source_path"))
    identities = _identities(gt_dir, by_id) if gt_dir is not None else {}
    entries = []
    for row in bank["entries"]:
        t = by_id[int(row["track_id"])]
        attrs = {a: (v["label"], float(v["confidence"]), v.get("positive"))
                 for a, v in t["attributes"].items()}
        entries.append(Entry(
            source, int(t["track_id"]), l2_normalise(np.asarray(row["embedding"], np.float32)),
            attrs, _thumbnail(track_dir, t), int(t["first_frame"]), int(t["last_frame"]),
            *_times(t, fps), identities.get(int(t["track_id"]), "")))
    return source, entries, str(tracks.get("ended") or "")


def _identities(seq_dir: Path, tracks: dict[int, dict[str, Any]]) -> dict[int, str]:
    """Track id -> ground-truth identity (see the module docstring); empty unless ``seq_dir``
    is a MOT sequence folder (``img1/`` and ``gt/gt.txt``)."""
    import torch
    from torchvision.ops import box_iou

    from personkit.data.mot import read_detections, read_seqinfo

    gt_file = seq_dir / "gt" / "gt.txt"
    if not (seq_dir / "img1").is_dir() or not gt_file.is_file():
        return {}
    ini = read_seqinfo(seq_dir)
    space = ini.get("identities") or ini.get("name") or seq_dir.name
    gt = read_detections(gt_file, gt=True)
    out = {}
    for tid, t in tracks.items():
        votes: Counter[int] = Counter()
        for f in t["frames"]:
            boxes = gt.boxes.get(int(f["frame"]))
            if boxes is None or not len(boxes):
                continue
            iou = box_iou(torch.tensor([f["box"]], dtype=torch.float64),
                          torch.from_numpy(np.asarray(boxes, np.float64)))[0].numpy()
            if iou.max() >= 0.5:
                votes[int(gt.gt_ids[int(f["frame"])][int(iou.argmax())])] += 1
        if votes:
            pid, n = votes.most_common(1)[0]
            if n >= len(t["frames"]) / 2:
                out[tid] = f"{space}:{pid}"
    return out


def crop_entries(folder: str | Path, predictor: Predictor,
                 source: str | None = None) -> tuple[str, list[Entry]]:
    """One entry per image of a folder of person crops (track id: its 1-based position in
    name order; no frame span)."""
    from personkit.data.io import encode_jpeg, read_image
    from personkit.data.mot import list_images
    from personkit.inference.visualize import thumbnail

    folder = Path(folder)
    paths = list_images(folder)
    if not paths:
        raise ValueError(f"{folder}: no images (.jpg, .png, ...) to index")
    source = source or folder.name
    entries = []
    for start in range(0, len(paths), predictor.batch_size):
        images = [read_image(p) for p in paths[start:start + predictor.batch_size]]
        for i, (image, r) in enumerate(zip(images, predictor.predict_crops(images),
                                           strict=True)):
            attrs = {a: (p.label, p.probability, p.positive)
                     for a, p in (r.attributes or {}).items()}
            entries.append(Entry(source, start + i + 1, l2_normalise(r.embedding), attrs,
                                 encode_jpeg(thumbnail(image, r, margin=0.0))))
    return source, entries


def _source_name(src: str) -> str:
    if "://" in src:
        return src.split("://", 1)[1].strip("/").replace("/", "_").replace(":", "_") or "live"
    path = Path(src)
    return path.stem if path.is_file() else path.name


def _default_name(src: str, crops: bool) -> str:
    """The name a source gets on its own: a track folder's sequence, a crop folder's name,
    a file's stem, a folder's name or a stream's address."""
    if is_track_output(src):
        return str(_track_json(Path(src), "tracks.json").get("sequence") or Path(src).name)
    return Path(src).name if crops else _source_name(src)


def _path_parts(src: str, stem: bool = True) -> list[str]:
    """The folders and the name of a source's absolute path (a file's stem with ``stem``), or
    the parts of a stream's address."""
    if "://" in src:
        return [p for p in src.split("://", 1)[1].replace(":", "/").split("/") if p]
    path = Path(os.path.abspath(src))
    parts = list(path.parts[1:]) or [path.name]
    if stem and path.is_file():
        parts[-1] = path.stem
    return parts


def _name_apart(group: list[str], taken: set[str]) -> list[str] | None:
    """Names for sources sharing a default name: their paths' last ``k`` parts joined with
    ``_``, for the smallest ``k`` that tells them apart and from ``taken``; a file's stem
    first, then its whole name. None when no ``k`` does."""
    for stem in (True, False):
        parts = [_path_parts(src, stem) for src in group]
        for k in range(1, max(map(len, parts)) + 1):
            names = ["_".join(p[-k:]) for p in parts]
            if len(set(names)) == len(names) and not taken & set(names):
                return names
    return None


def source_names(sources: Sequence[str], defaults: Sequence[str]) -> list[str]:
    """Unique names for the sources of one ``personkit index`` command. Each keeps its default
    name (a track folder's sequence, a file's stem, a folder's name) unless another source of
    the command has it too; those are named from their paths instead: the last parts of the
    absolute path joined with ``_``, as few as tell them apart (``a/clip.mp4`` and
    ``b/clip.mp4``: ``a_clip`` and ``b_clip``; track folders ``runs/cam1`` and ``runs/cam2``
    of one sequence: ``cam1`` and ``cam2``), never equal to another source's name; a file's
    extension is kept only when the stems cannot tell them apart.

    Raises:
        ValueError: a source given twice, or sources no part of their paths tells apart.
    """
    seen: dict[str, str] = {}
    for src in sources:
        key = src if "://" in src else str(Path(src).resolve())
        if key in seen:
            raise ValueError(f"source {shown_path(src)} is given twice (as {shown_path(seen[key])}"
                             f" and {shown_path(src)})")
        seen[key] = src
    names = list(defaults)
    counts = Counter(names)
    for default in [n for n, c in counts.items() if c > 1]:
        group = [i for i, n in enumerate(names) if n == default]
        taken = {n for i, n in enumerate(names) if i not in group}
        apart = _name_apart([sources[i] for i in group], taken)
        if apart is None:
            raise ValueError(f"sources {', '.join(shown_path(sources[i]) for i in group)} are "
                             f"all named {default!r} and their paths cannot tell them apart; "
                             f"index them one at a time with --name")
        for i, new in zip(group, apart, strict=True):
            names[i] = new
    return names


def _plan(sources: Sequence[str], crops: bool, name: str | None) -> list[tuple[str, str]]:
    """``(source, name)`` for every source, named uniquely (:func:`source_names`; the renamed
    ones printed) and checked to be UTF-8, before anything is tracked."""
    if name is not None and len(sources) != 1:
        raise ValueError(f"--name names one source; {len(sources)} were given")
    defaults = [name] if name is not None else [_default_name(str(s), crops) for s in sources]
    names = source_names([str(s) for s in sources], defaults)
    renamed = [(s, d, n) for s, d, n in zip(sources, defaults, names, strict=True) if d != n]
    if renamed:
        print("index: sources sharing a name are named from their paths: " + ", ".join(
            f"{shown_path(s)} ({d}) -> {n}" for s, d, n in renamed), flush=True)
    fix = "rename it or name the source with --name"
    return [(str(s), check_name(n, s, fix)) for s, n in zip(sources, names, strict=True)]


def index_sources(index_path: str | Path, sources: list[str], predictor: Predictor, *,
                  crops: bool = False, name: str | None = None, backend: str = DEFAULT_BACKEND,
                  qdrant_url: str | None = None, progress: bool = False,
                  **track_options: Any) -> dict[str, Any]:
    """``personkit index``: each source into the index at ``index_path`` (created for
    ``predictor``'s model if missing, naming the model by :attr:`Predictor.path`), replacing
    what the index held of it. A source is a ``personkit track`` output folder, a folder of
    crops (``crops``), or anything ``personkit track`` reads (tracked into
    ``INDEX/tracks/NAME`` by :func:`~personkit.track.run.track` with ``predictor`` and
    ``track_options``: ``detector``, ``detections``, ``mot_source``, ...). ``name``: the camera
    name of a single source; several sources are named uniquely (:func:`source_names`). A
    source whose tracking ended at a broken frame is indexed with what was tracked before
    it, with a warning on stderr.

    Returns:
        ``{"index": summary, "added": {source: entries}, "ended": {source: why}}``
        (``ended``: the sources whose tracking ended early).
    """
    plan = _plan(sources, crops, name)
    model_path = str(predictor.path) if predictor.path is not None else None
    index = PeopleIndex.create_or_open(index_path, index_info(
        predictor, model_path, backend, qdrant_url))
    added, ended = {}, {}
    for src, source in plan:
        source, entries, stop = _source_entries(index, predictor, src, source, crops,
                                                progress=progress, **track_options)
        if stop:
            ended[source] = stop
            print(f"index: warning: {source}: tracking ended early ({stop}); indexing the "
                  f"{len(entries)} people tracked before it", file=sys.stderr, flush=True)
        index.add(source, entries)
        added[source] = len(entries)
        if progress:
            print(f"index: {source}: {len(entries)} people", flush=True)
    return {"index": index.summary(), "added": added, "ended": ended}


def _source_entries(index: PeopleIndex, predictor: Predictor, src: str, source: str, crops: bool,
                    **track_options: Any) -> tuple[str, list[Entry], str]:
    """The name, entries and early end (:func:`_track_folder`) of one source: a track folder
    read, a folder of crops predicted, or anything else tracked into ``INDEX/tracks/NAME``
    first (a run that ended at a broken frame has written what it tracked, and its
    ``tracks.json`` says why it ended)."""
    from personkit.track.run import TrackingStopped, track

    if is_track_output(src):
        return _track_folder(Path(src), index.info, source, None)
    if crops:
        return (*crop_entries(src, predictor, source), "")
    out = index.path / "tracks" / source
    try:
        track(predictor, src, out, overwrite=True, **track_options)  # the source, again
    except TrackingStopped:
        pass
    seq_dir = Path(src) if "://" not in src and is_mot_sequence(src) else None
    return _track_folder(out, index.info, source, seq_dir)
