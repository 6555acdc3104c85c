"""People into an index (``personkit index``): from the output folder of ``personkit track``,
from anything ``track`` reads (a MOT sequence, a video, a stream; tracked into the index's
``tracks/`` folder first, with a detector when given), or from a folder of person crops.

A track's entry holds its merged attributes, its mean embedding (the bank ``track`` writes in
``gallery.json``), its frame span and times (``frame / frame rate``) and its thumbnail (the
track's best view, ``thumbs/ID.jpg``). When the tracked sequence has ground truth
(``gt/gt.txt``), each track is given the identity its boxes overlap most (IoU >= 0.5 on at
least half of its frames), for :meth:`~personkit.index.people.PeopleIndex.evaluate`.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from personkit.index.entries import Entry, IndexInfo
from personkit.inference.predictor import Predictor
from personkit.track.merge import l2_normalise

#: Files of a ``personkit track`` output folder that indexing reads.
TRACK_FILES = ("tracks.json", "gallery.json")


def index_info(predictor: Predictor, model_path: str | None = None,
               backend: str = "lancedb", qdrant_url: str | None = None) -> IndexInfo:
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


def track_entries(track_dir: str | Path, info: IndexInfo,
                  source: str | None = None) -> tuple[str, list[Entry]]:
    """The entries of a ``personkit track`` output folder (``source``: the camera name, by
    default the tracked sequence's name).

    Raises:
        ValueError: the folder is from another model (naming both), lacks thumbnails (an older
            ``track``) or is malformed (naming the file).
    """
    track_dir = Path(track_dir)
    tracks = _read_json(track_dir / "tracks.json")
    bank = _read_json(track_dir / "gallery.json")
    if bank.get("model") != info.model:
        raise ValueError(f"{track_dir} was tracked with model {bank.get('model') or 'unknown'}, "
                         f"the index holds model {info.model}: their embedding spaces differ; "
                         f"track it again with the index's model")
    source = source or str(tracks.get("sequence") or track_dir.name)
    fps = float(tracks.get("frame_rate") or 0) or 1.0
    by_id = {int(t["track_id"]): t for t in tracks["tracks"]}
    identities = _identities(Path(tracks["source_path"]), by_id) if tracks.get(
        "source_path") else {}
    entries = []
    for row in bank["entries"]:
        t = by_id[int(row["track_id"])]
        if not t.get("thumbnail"):
            raise ValueError(f"{track_dir / 'tracks.json'}: track {t['track_id']} has no "
                             f"thumbnail (written by an older personkit track); track again")
        attrs = {a: (v["label"], float(v["confidence"])) for a, v in t["attributes"].items()}
        entries.append(Entry(
            source, int(t["track_id"]), l2_normalise(np.asarray(row["embedding"], np.float32)),
            attrs, (track_dir / t["thumbnail"]).read_bytes(), int(t["first_frame"]),
            int(t["last_frame"]), (int(t["first_frame"]) - 1) / fps,
            (int(t["last_frame"]) - 1) / fps, identities.get(int(t["track_id"]), "")))
    return source, entries


def _identities(seq_dir: Path, tracks: dict[int, dict[str, Any]]) -> dict[int, str]:
    """Track id -> ground-truth identity (see the module docstring); empty without
    ``gt/gt.txt``."""
    import torch
    from torchvision.ops import box_iou

    from personkit.inference.sources import read_seqinfo
    from personkit.track.io import read_detections

    gt_file = seq_dir / "gt" / "gt.txt"
    if not seq_dir.is_dir() or not gt_file.is_file():
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
    from personkit.inference.sources import list_images
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
            attrs = {a: (p.label, p.probability) for a, p in (r.attributes or {}).items()}
            entries.append(Entry(source, start + i + 1, l2_normalise(r.embedding), attrs,
                                 encode_jpeg(thumbnail(image, r, margin=0.0))))
    return source, entries


def _source_name(src: str) -> str:
    if "://" in src:
        return src.split("://", 1)[1].strip("/").replace("/", "_").replace(":", "_") or "live"
    path = Path(src)
    return path.stem if path.is_file() else path.name


def index_sources(index_path: str | Path, sources: list[str], checkpoint: str | Path, *,
                  crops: bool = False, name: str | None = None, backend: str = "lancedb",
                  qdrant_url: str | None = None, device: str = "auto", flip_tta: bool = True,
                  batch_size: int = 32, progress: bool = False,
                  **track_options: Any) -> dict[str, Any]:
    """``personkit index``: each source into the index at ``index_path`` (created for
    ``checkpoint``'s model if missing), replacing what the index held of it. A source is a
    ``personkit track`` output folder, a folder of crops (``crops``), or anything ``personkit
    track`` reads (tracked into ``INDEX/tracks/NAME`` with ``track_options``: ``detector``,
    ``detections``, ``tracker``, ...). ``name``: the camera name of a single source.

    Returns:
        ``{"index": summary, "added": {source: entries}}``.
    """
    from personkit.index.people import PeopleIndex

    if name is not None and len(sources) != 1:
        raise ValueError(f"--name names one source; {len(sources)} were given")
    predictor = Predictor.from_checkpoint(checkpoint, device, flip_tta=flip_tta,
                                          batch_size=batch_size)
    index = PeopleIndex.create_or_open(index_path, index_info(
        predictor, str(checkpoint), backend, qdrant_url))
    added = {}
    for src in sources:
        if is_track_output(src):
            source, entries = track_entries(src, index.info, name)
        elif crops:
            source, entries = crop_entries(src, predictor, name)
        else:
            from personkit.track.run import track

            source = name or _source_name(str(src))
            out = index.path / "tracks" / source
            track(checkpoint, src, out, device=device, flip_tta=flip_tta, batch_size=batch_size,
                  progress=progress, **track_options)
            source, entries = track_entries(out, index.info, source)
        index.add(source, entries)
        added[source] = len(entries)
        if progress:
            print(f"index: {source}: {len(entries)} people", flush=True)
    return {"index": index.summary(), "added": added}
