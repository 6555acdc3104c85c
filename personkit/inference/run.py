"""The ``personkit predict`` loop: every frame of an input source through a :class:`Predictor`,
written to an output folder.

Output folder:

* ``results.jsonl``: one JSON object per box: ``image`` (frame or crop name), ``index`` (box
  number in that image), ``embedding_row`` (row in ``embeddings.npy``), and
  :meth:`PersonResult.to_dict` (box, attributes, keypoints, part fractions); MOT inputs add
  ``frame``, ``track_id`` and ``score``, image inputs add ``score``.
* ``embeddings.npy``: ``N×D`` float32, one row per box in ``results.jsonl`` order.
* ``vis/<image>.png``: the overlays (unless ``vis=False``).
* ``parts/<image>_<index>.png``: the part label maps as 8-bit PNGs (if ``save_parts``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from personkit.inference.predictor import PersonResult, Predictor
from personkit.inference.sources import Frame, InputSource
from personkit.inference.visualize import draw_results, save_image


def predict_source(predictor: Predictor, source: InputSource, out_dir: str | Path, *,
                   vis: bool = True, save_parts: bool = False, progress: bool = True,
                   text: Sequence[str] = ("gender",)) -> dict[str, Any]:
    """Run ``predictor`` on every frame of ``source`` and write ``out_dir``.

    Returns a summary: number of images and boxes and the paths written.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    embeddings: list[np.ndarray] = []
    n_boxes = 0
    bar = tqdm(total=len(source), unit="crop" if source.kind == "crops" else "frame",
               disable=not progress, desc="predict")
    with open(out_dir / "results.jsonl", "w", encoding="utf-8") as jsonl:
        for frame, image, results in _iter_results(predictor, source):
            for i, r in enumerate(results):
                record = _record(frame, i, r, len(embeddings) if r.embedding is not None else None)
                jsonl.write(json.dumps(record) + "\n")
                if r.embedding is not None:
                    embeddings.append(r.embedding)
                if save_parts and r.parts is not None:
                    save_image(out_dir / "parts" / f"{frame.name}_{i}.png",
                               np.repeat(r.parts[:, :, None], 3, axis=2))
            if vis:
                save_image(out_dir / "vis" / f"{frame.name}.png",
                           draw_results(image, results, text=text))
            n_boxes += len(results)
            bar.update(1)
    bar.close()
    summary: dict[str, Any] = {"images": len(source), "boxes": n_boxes,
                               "results": str(out_dir / "results.jsonl")}
    if embeddings:
        np.save(out_dir / "embeddings.npy", np.stack(embeddings).astype(np.float32))
        summary["embeddings"] = str(out_dir / "embeddings.npy")
    if vis:
        summary["vis"] = str(out_dir / "vis")
    return summary


def _iter_results(predictor: Predictor, source: InputSource
                  ) -> Iterator[tuple[Frame, np.ndarray, list[PersonResult]]]:
    """(frame, RGB image, results) per frame; crops are batched ``batch_size`` at a time."""
    if source.kind == "crops":
        frames = source.frames
        for start in range(0, len(frames), predictor.batch_size):
            chunk = frames[start:start + predictor.batch_size]
            images = [f.load() for f in chunk]
            for frame, image, r in zip(chunk, images, predictor.predict_crops(images),
                                       strict=True):
                yield frame, image, [r]
        return
    for frame in source:
        image = frame.load()
        yield frame, image, predictor.predict(image, frame.boxes)


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
