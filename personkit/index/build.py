"""People into an index (``personkit index``): from the output folder of ``personkit track``,
from anything ``track`` reads (a MOT sequence, a video, a stream; tracked into the index's
``tracks/`` folder first, with a detector when given), or from a folder of person crops.

A track's entry holds its merged attributes, its mean embedding (the bank ``track`` writes in
``gallery.json``), its frame span and times (``first_time``/``last_time`` of ``tracks.json``:
seconds from the source's first frame, from presentation timestamps where the source has them;
``(frame - 1) / frame rate`` for an older ``tracks.json`` without them), when it was seen
(``first_seen``/``last_seen``, ISO-8601 UTC: those seconds after the recording's start, which
``--start-time`` gives or ``tracks.json``'s ``start_time``; none when neither does) and its
thumbnail (the track's best view, ``thumbs/ID.jpg``).

Each source is a recording of a camera (:func:`recording_for`): indexing the same recording
again (the same file or folder, by its absolute path) replaces its entries; another recording
of the camera (``--name door`` on a second file, another connection to a stream) adds to it.

When the tracked source is a MOT sequence folder with ground truth (``img1/`` and
``gt/gt.txt``), each track is given the identity its boxes overlap most (IoU >= 0.5 on at least
half of its frames), for :meth:`~personkit.index.people.PeopleIndex.evaluate`.

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

import dataclasses
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from personkit.data.mot import is_mot_sequence
from personkit.data.times import parse_time, seen_at
from personkit.data.urls import strip_credentials
from personkit.index.entries import RECORDING_SEP, Entry, IndexInfo, recording_key
from personkit.index.people import DEFAULT_BACKEND, PeopleIndex
from personkit.inference.predictor import Predictor
from personkit.inference.sources import check_name, shown_path
from personkit.track.live import is_live
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
                  seq_dir: str | Path | None = None,
                  start_time: str | None = None) -> tuple[str, list[Entry]]:
    """The entries of a ``personkit track`` output folder (``source``: the camera name, by
    default the tracked sequence's name). Every file is read from inside the folder (module
    docstring); ground-truth identities come from ``seq_dir`` (the MOT sequence that was
    tracked) or else the ``source_path`` of ``tracks.json`` when that is a MOT sequence folder.
    ``start_time`` (ISO-8601) places the tracks in time instead of ``tracks.json``'s start.

    Raises:
        ValueError: the folder is from another model (naming both), lacks thumbnails (an older
            ``track``), names a file outside itself, or is malformed (naming the file).
    """
    source, entries, _ = _track_folder(Path(track_dir), info, source, seq_dir, start_time)
    return source, entries


def _start(tracks: dict[str, Any], given: str | None, where: Path) -> tuple[datetime | None,
                                                                           str]:
    """When a track folder's recording started and how that is known: ``given``
    (``--start-time``), else ``tracks.json``'s ``start_time``; (None, "") when neither."""
    if given:
        return parse_time(given, "--start-time", relative=False), "start_time"
    if not tracks.get("start_time"):
        return None, ""
    start = parse_time(str(tracks["start_time"]), f"{shown_path(where)}: start_time",
                       relative=False)
    return start, str(tracks.get("time_source") or "")


def tracks_origin(track_dir: Path, tracks: dict[str, Any]) -> str:
    """Which recording a track folder holds: ``tracks.json``'s ``source_path`` (a stream's
    address with the time its first frame arrived: one connection), else the folder."""
    path = str(tracks.get("source_path") or "")
    if path and is_live(path):
        return f"{path} {tracks.get('start_time') or ''}".strip()
    return path or shown_path(track_dir.resolve())


def _track_folder(track_dir: Path, info: IndexInfo, source: str | None,
                  seq_dir: str | Path | None,
                  start_time: str | None = None) -> tuple[str, list[Entry], str]:
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
    start, time_source = _start(tracks, start_time, track_dir / "tracks.json")
    origin = tracks_origin(track_dir, tracks)
    entries = []
    for row in bank["entries"]:
        t = by_id[int(row["track_id"])]
        attrs = {a: (v["label"], float(v["confidence"]), v.get("positive"))
                 for a, v in t["attributes"].items()}
        first, last = _times(t, fps)
        entries.append(Entry(
            source, int(t["track_id"]), l2_normalise(np.asarray(row["embedding"], np.float32)),
            attrs, _thumbnail(track_dir, t), int(t["first_frame"]), int(t["last_frame"]),
            first, last, identities.get(int(t["track_id"]), ""), origin=origin,
            first_seen=seen_at(start, first), last_seen=seen_at(start, last),
            time_source=time_source if start is not None else ""))
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
        address = strip_credentials(src).split("://", 1)[1]
        return address.strip("/").replace("/", "_").replace(":", "_") or "live"
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
        address = strip_credentials(src).split("://", 1)[1]
        return [p for p in address.replace(":", "/").split("/") if p]
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


def source_origin(src: str, crops: bool = False) -> str | None:
    """Which recording ``src`` is: a track folder's (:func:`tracks_origin`), a file's or
    folder's absolute path; None for a stream (every connection is a new recording)."""
    if "://" in src or is_live(src):
        return None
    if not crops and is_track_output(src):
        return tracks_origin(Path(src), _track_json(Path(src), "tracks.json"))
    return shown_path(Path(src).resolve())  # a name that is not UTF-8: its bytes as \xNN


def recording_for(camera: str, origin: str | None, default: str,
                  recordings: Sequence[dict[str, Any]]) -> str:
    """The name of the recording ``origin`` of ``camera`` ("": the one named as the camera),
    given the index's ``recordings``: the one of the same origin (indexed again: replaced);
    else one an older index kept without an origin (replaced, once: it cannot be told apart);
    else ``default`` (``_2``, ``_3``, ... appended while the camera has that name: added).

    Raises:
        ValueError: the recording's entry ids would be another camera's (a camera named
            ``a/b`` beside camera ``a``'s recording ``b``).
    """
    mine = {r["recording"]: r["origin"] for r in recordings if r["camera"] == camera}
    others = {recording_key(r["camera"], r["recording"]): r for r in recordings
              if r["camera"] != camera}  # a camera named "a/b" and camera a's recording b
    same = [r for r, o in mine.items() if origin is not None and o == origin]
    unknown = [r for r, o in mine.items() if o is None]
    name = (same or unknown or [None])[0]
    if name is None:
        base = default if default == camera else default.replace(RECORDING_SEP, "_")
        name, n = base, 1
        while name in mine or (name != camera and recording_key(camera, name) in others):
            n += 1
            name = f"{base}_{n}"
    clash = others.get(recording_key(camera, name))
    if clash is not None:
        raise ValueError(f"camera {camera!r}: its entry ids would be those of camera "
                         f"{clash['camera']!r}'s recording {clash['recording']!r}; name the "
                         f"camera otherwise with --name")
    return "" if name == camera else name


def _default_recording(src: str, camera: str, named: bool, crops: bool) -> str:
    """A new recording's name: a stream's connection time (``20260105T140000Z``), a track
    folder of a stream's start; with ``--name``, the source's own name; else the camera's."""
    if "://" in src or is_live(src):
        return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if not crops and is_track_output(src):
        tracks = _track_json(Path(src), "tracks.json")
        if is_live(str(tracks.get("source_path") or "")) and tracks.get("start_time"):
            start = parse_time(str(tracks["start_time"]), "start_time", relative=False)
            return start.strftime("%Y%m%dT%H%M%SZ")
    return shown_path(_default_name(src, crops)) if named else camera


def index_sources(index_path: str | Path, sources: list[str], predictor: Predictor, *,
                  crops: bool = False, name: str | None = None, backend: str = DEFAULT_BACKEND,
                  qdrant_url: str | None = None, progress: bool = False,
                  start_time: str | None = None, **track_options: Any) -> dict[str, Any]:
    """``personkit index``: each source into the index at ``index_path`` (created for
    ``predictor``'s model if missing, naming the model by :attr:`Predictor.path`) as a
    recording of its camera (:func:`recording_for`: the same recording again replaces its
    entries, another one adds). A source is a ``personkit track`` output folder, a folder of
    crops (``crops``), or anything ``personkit track`` reads (tracked into
    ``INDEX/tracks/CAMERA`` or ``INDEX/tracks/CAMERA@RECORDING`` by
    :func:`~personkit.track.run.track` with ``predictor`` and ``track_options``: ``detector``,
    ``detections``, ``mot_source``, ...). ``name``: the camera name of a single source;
    several sources are named uniquely (:func:`source_names`). ``start_time`` (ISO-8601):
    when the sources' first frames were captured (default: :func:`~personkit.track.io.start_of`,
    or a track folder's ``start_time``). A source whose tracking ended at a broken frame is
    indexed with what was tracked before it, with a warning on stderr.

    Returns:
        ``{"index": summary, "added": {recording key: entries}, "ended": {key: why}}``
        (``ended``: the recordings whose tracking ended early).
    """
    plan = _plan(sources, crops, name)
    if start_time:  # told before anything is tracked
        parse_time(start_time, "--start-time", relative=False)
        if crops:
            raise ValueError(f"--start-time {start_time}: a folder of crops has no frames to "
                             f"place in time; its people are indexed without times")
    model_path = str(predictor.path) if predictor.path is not None else None
    index = PeopleIndex.create_or_open(index_path, index_info(
        predictor, model_path, backend, qdrant_url))
    recordings = index.store.recordings()
    added, ended = {}, {}
    for src, source in plan:
        origin = source_origin(src, crops)
        recording = recording_for(source, origin, _default_recording(
            src, source, name is not None, crops), recordings)
        key = recording_key(source, recording)
        source, entries, stop = _source_entries(index, predictor, src, source, key, crops,
                                                progress=progress, start_time=start_time,
                                                **track_options)
        entries = [dataclasses.replace(e, recording=recording, origin=e.origin or origin or "")
                   for e in entries]
        if stop:
            ended[key] = stop
            print(f"index: warning: {key}: tracking ended early ({stop}); indexing the "
                  f"{len(entries)} people tracked before it", file=sys.stderr, flush=True)
        index.add(source, entries, recording)
        added[key] = len(entries)
        if progress:
            print(f"index: {key}: {len(entries)} people", flush=True)
    return {"index": index.summary(), "added": added, "ended": ended}


def _source_entries(index: PeopleIndex, predictor: Predictor, src: str, source: str, key: str,
                    crops: bool, start_time: str | None = None,
                    **track_options: Any) -> tuple[str, list[Entry], str]:
    """The name, entries and early end (:func:`_track_folder`) of one source: a track folder
    read, a folder of crops predicted, or anything else tracked into ``INDEX/tracks/NAME``
    first (``NAME``: the recording ``key``, its ``/`` written ``@``; a run that ended at a
    broken frame has written what it tracked, and its ``tracks.json`` says why it ended)."""
    from personkit.track.run import TrackingStopped, track

    if is_track_output(src):
        return _track_folder(Path(src), index.info, source, None, start_time)
    if crops:
        return (*crop_entries(src, predictor, source), "")
    out = index.path / "tracks" / key.replace(RECORDING_SEP, "@")
    try:  # the source, again
        track(predictor, src, out, overwrite=True, start_time=start_time, **track_options)
    except TrackingStopped:
        pass
    seq_dir = Path(src) if "://" not in src and is_mot_sequence(src) else None
    return _track_folder(out, index.info, source, seq_dir)
