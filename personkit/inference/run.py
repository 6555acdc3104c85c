"""The ``personkit predict`` loop: every frame of an input source through a :class:`Predictor`,
written to an output folder.

Output folder:

* ``results.jsonl``: one JSON object per box: ``image`` (frame or crop name), ``index`` (box
  number in that image), ``embedding_row`` (row in ``embeddings.npy``), and
  :meth:`PersonResult.to_dict` (box, attributes, keypoints, part fractions); MOT inputs add
  ``frame``, ``track_id`` and ``score``, image inputs add ``score``.
* ``embeddings.npy``: ``N×D`` float32, one row per box in ``results.jsonl`` order.
* ``summary.json``: what :func:`predict_source` returns (counts, ``skipped_boxes``, paths).
* ``vis/<image>.png``: the overlays (unless ``vis=False``).
* ``parts/<image>_<index>.png``: the part label maps as 8-bit class ids, and
  ``parts/<image>_<index>_color.png`` the same in colour (if ``save_parts``).

``index`` is the box's number in the input (its row among the frame's boxes), so results map
back to the detection file. Degenerate boxes of a MOT sequence (not finite, or no area inside
the image after clipping: real ``det.txt`` files hold some) are skipped, counted in the
summary's ``skipped_boxes`` and reported on stderr; the others are predicted. In a boxes file
given for one image such a box is an error naming it. ``results.jsonl`` and ``embeddings.npy``
are written under temporary names and renamed when the run is complete, so an error never
leaves a partial results file.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from personkit.checkpoint import write_json
from personkit.data.io import BadImageError
from personkit.inference.backends import engine_record
from personkit.inference.detectors import detector_summary
from personkit.inference.predictor import PersonResult, Predictor
from personkit.inference.sources import Frame, InputSource, open_frames, open_input
from personkit.inference.visualize import draw_results, save_image, save_part_maps
from personkit.models.detector import DetectorBase
from personkit.outputs import claim_outputs

#: Overlays of person crops (128×64 in Market) are enlarged to at least this height.
CROP_VIS_HEIGHT = 256
#: What ``predict`` writes into its folder: files, then folders.
OUTPUT_FILES, OUTPUT_FOLDERS = ("results.jsonl", "embeddings.npy", "summary.json"), ("vis", "parts")


def claim_output(out_dir: Path, overwrite: bool) -> None:
    """``out_dir`` must not hold an earlier ``predict``'s results unless ``overwrite``, which
    removes them (only them: :func:`~personkit.outputs.claim_outputs`): old overlays and rows
    never mix with new ones."""
    claim_outputs(out_dir, OUTPUT_FILES + OUTPUT_FOLDERS, overwrite, "predict")


def predict_source(predictor: Predictor, source: InputSource, out_dir: str | Path, *,
                   vis: bool = True, save_parts: bool = False, progress: bool = True,
                   text: Sequence[str] = ("gender",), overwrite: bool = False,
                   detector: DetectorBase | None = None) -> dict[str, Any]:
    """Run ``predictor`` on every frame of ``source`` and write ``out_dir`` (an earlier run's
    results there are refused, or with ``overwrite`` replaced: :func:`claim_output`); the
    people of a ``frames`` source are found by ``detector`` (an opened detector,
    :func:`~personkit.inference.detectors.open_detector`).

    Returns a summary: number of images and boxes and the paths written.
    """
    out_dir = Path(out_dir)
    claim_output(out_dir, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    bad_images: list[str] = []
    dropped = detector.dropped if detector is not None else 0
    people = _iter_results(predictor, source, skipped, bad_images, detector)
    n_boxes, embedded = _write_results(people, source, out_dir, vis=vis, save_parts=save_parts,
                                       progress=progress, text=text)
    summary: dict[str, Any] = {"input": source.kind, "images": len(source), "boxes": n_boxes,
                               "skipped_boxes": len(skipped),
                               "results": str(out_dir / "results.jsonl"),
                               "engine": engine_record(predictor.engine)}
    summary.update(_report(skipped, bad_images, detector, dropped))
    if embedded:
        summary["embeddings"] = str(out_dir / "embeddings.npy")
    if vis:
        summary["vis"] = str(out_dir / "vis")
    write_json(out_dir / "summary.json", summary)
    return summary


def _write_results(people: Iterator[tuple[Frame, np.ndarray, list[int], list[PersonResult]]],
                   source: InputSource, out_dir: Path, *, vis: bool, save_parts: bool,
                   progress: bool, text: Sequence[str]) -> tuple[int, bool]:
    """``results.jsonl`` and ``embeddings.npy`` of ``people`` (:func:`_iter_results`), under
    temporary names until the last frame is done, and their ``vis/`` and ``parts/``; returns
    the number of boxes and whether any has an embedding."""
    from tqdm import tqdm

    embeddings: list[np.ndarray] = []
    n_boxes = 0
    bar = tqdm(total=len(source), unit="crop" if source.kind == "crops" else "frame",
               disable=not progress, desc="predict")
    tmp_results, tmp_emb = out_dir / ".results.jsonl.tmp", out_dir / ".embeddings.npy.tmp"
    try:
        with open(tmp_results, "w", encoding="utf-8") as jsonl:
            for frame, image, kept, results in people:
                for i, r in zip(kept, results, strict=True):
                    row = len(embeddings) if r.embedding is not None else None
                    jsonl.write(json.dumps(_record(frame, i, r, row)) + "\n")
                    if r.embedding is not None:
                        embeddings.append(r.embedding)
                    if save_parts and r.parts is not None:
                        save_part_maps(out_dir / "parts" / f"{frame.name}_{i}.png", r.parts,
                                       len(r.part_classes))
                if vis:
                    save_image(out_dir / "vis" / f"{frame.name}.png", draw_results(
                        image, results, text=text, min_height=CROP_VIS_HEIGHT
                        if source.kind == "crops" else 0))
                n_boxes += len(results)
                bar.update(1)
        if embeddings:
            with open(tmp_emb, "wb") as f:
                np.save(f, np.stack(embeddings).astype(np.float32))
            os.replace(tmp_emb, out_dir / "embeddings.npy")
        else:
            (out_dir / "embeddings.npy").unlink(missing_ok=True)  # no stale rows of a rerun
        os.replace(tmp_results, out_dir / "results.jsonl")
    finally:
        bar.close()
        tmp_results.unlink(missing_ok=True)
        tmp_emb.unlink(missing_ok=True)
    return n_boxes, bool(embeddings)


def _report(skipped: list[str], bad_images: list[str], detector: DetectorBase | None,
            dropped: int) -> dict[str, Any]:
    """Print what was skipped and what the detector dropped (``dropped``: its count before
    this run) on stderr; their entries of the summary."""
    out: dict[str, Any] = {}
    if skipped:
        print(f"predict: skipped {len(skipped)} degenerate box(es) (not finite, or no area "
              f"inside the image), e.g. {skipped[0]}", file=sys.stderr)
        out["skipped_examples"] = skipped[:10]
    if bad_images:
        print(f"predict: skipped {len(bad_images)} undecodable image(s): "
              f"{'; '.join(bad_images[:3])}", file=sys.stderr)
        out["skipped_images"] = bad_images
    if detector is not None:
        out["detector"] = detector_summary(detector, dropped)
        if out["detector"]["dropped_non_finite"]:
            print(f"predict: the detector gave {out['detector']['dropped_non_finite']} box(es) "
                  f"with a non-finite value; dropped", file=sys.stderr)
    return out


def predict_input(input_path: str | Path, *, boxes: str | Path | None = None,
                  mot_source: str = "auto", min_score: float | None = None, crops: bool = False,
                  frames: bool = False) -> InputSource:
    """The input of ``personkit predict``: an image with ``boxes``, a folder of crops or a MOT
    sequence (:func:`~personkit.inference.sources.open_input`); with ``frames`` (the people
    found by a detector) an image, a folder of frames or a MOT sequence's images
    (:func:`~personkit.inference.sources.open_frames`)."""
    if frames and (boxes is not None or crops):
        raise ValueError("--detector finds the people itself: drop --boxes / --crops")
    return (open_frames(input_path) if frames else
            open_input(input_path, boxes, mot_source, min_score, crops))


def predict(predictor: Predictor, input_path: str | Path, out_dir: str | Path, *,
            boxes: str | Path | None = None, mot_source: str = "auto",
            min_score: float | None = None, crops: bool = False,
            detector: DetectorBase | None = None, **outputs: Any) -> dict[str, Any]:
    """``personkit predict``: ``predictor`` over the input at ``input_path``
    (:func:`predict_input`; with ``detector``, an opened detector, its frames) into
    ``out_dir``; ``outputs`` are :func:`predict_source`'s options (``vis``, ``save_parts``,
    ``progress``, ``overwrite``). Returns :func:`predict_source`'s summary."""
    source = predict_input(input_path, boxes=boxes, mot_source=mot_source, min_score=min_score,
                           crops=crops, frames=detector is not None)
    return predict_source(predictor, source, out_dir, detector=detector, **outputs)


def usable_boxes(boxes: np.ndarray | None, width: int, height: int) -> np.ndarray:
    """Bool mask of the boxes a :class:`Predictor` can crop: finite, with area inside the
    ``width×height`` image after clipping (the rule of ``clip_boxes``)."""
    if boxes is None or len(boxes) == 0:
        return np.zeros(0, bool)
    b = np.asarray(boxes, dtype=np.float64)[:, :4]
    with np.errstate(invalid="ignore"):
        x1, x2 = b[:, 0].clip(0, width), b[:, 2].clip(0, width)
        y1, y2 = b[:, 1].clip(0, height), b[:, 3].clip(0, height)
        return np.isfinite(b).all(1) & (x2 - x1 > 0) & (y2 - y1 > 0)


def _iter_results(predictor: Predictor, source: InputSource, skipped: list[str],
                  bad_images: list[str], detector: DetectorBase | None = None
                  ) -> Iterator[tuple[Frame, np.ndarray, list[int], list[PersonResult]]]:
    """(frame, RGB image, input box indices, results) per frame; crops are batched
    ``batch_size`` at a time; ``frames`` get their boxes from ``detector``. Degenerate boxes
    are left out and described in ``skipped``; in a folder of crops or frames or a MOT
    sequence an undecodable image is left out and named in ``bad_images`` (one bad file does
    not stop the folder; a single image is an error)."""
    def load(frame: Frame) -> np.ndarray | None:
        try:
            return frame.load()
        except BadImageError as e:
            if source.kind == "image" or (source.kind == "frames" and len(source) == 1):
                raise
            bad_images.append(str(e))
            return None

    if source.kind == "crops":
        frames = source.frames
        for start in range(0, len(frames), predictor.batch_size):
            loaded = [(f, im) for f in frames[start:start + predictor.batch_size]
                      if (im := load(f)) is not None]
            results = predictor.predict_crops([im for _, im in loaded])
            for (frame, image), r in zip(loaded, results, strict=True):
                yield frame, image, [0], [r]
        return
    for frame in source:
        image = load(frame)
        if image is None:
            continue
        if source.kind == "frames":  # boxes from the detector, already clipped and finite
            found = detector.detect([image])[0]
            frame.boxes, frame.scores = found[:, :4], found[:, 4]
        if source.kind not in ("mot", "frames"):  # a user's own boxes file: a bad box is an error
            yield frame, image, list(range(len(frame.boxes))), predictor.predict(image,
                                                                                 frame.boxes)
            continue
        ok = usable_boxes(frame.boxes, image.shape[1], image.shape[0])
        for i in np.flatnonzero(~ok):
            skipped.append(f"{frame.name} box {i} {np.round(frame.boxes[i, :4], 2).tolist()}")
        kept = np.flatnonzero(ok)
        boxes = frame.boxes[kept] if len(kept) else np.zeros((0, 4))
        yield frame, image, kept.tolist(), predictor.predict(image, boxes)


def _record(frame: Frame, index: int, r: PersonResult, row: int | None) -> dict[str, Any]:
    record: dict[str, Any] = {"image": frame.name, "index": index}
    if frame.frame is not None:
        record["frame"] = frame.frame
    if frame.ids is not None:
        record["track_id"] = int(frame.ids[index])
    if frame.scores is not None:
        record["score"] = float(frame.scores[index])
    record["embedding_row"] = row
    record.update(r.to_dict())
    return record
