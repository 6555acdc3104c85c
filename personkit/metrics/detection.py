"""Person detection: COCO box AP (AP@[.5:.95], AP50, AP75) computed by pycocotools' own
``COCOeval`` (Lin et al., ECCV 2014), one category (person).

Ground truth per image: target boxes and *ignore* boxes (people too occluded to be found:
``iscrowd`` regions, where detections count neither as hits nor as false positives, as COCO
treats crowds). Boxes are ``x1, y1, x2, y2`` in pixels; detections ``N×5`` with the score.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np


def _xywh(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return [x1, y1, x2 - x1, y2 - y1]


def coco_person_ap(targets: Sequence[np.ndarray], ignores: Sequence[np.ndarray],
                   detections: Sequence[np.ndarray]) -> dict[str, Any]:
    """COCO AP, AP50 and AP75 of ``detections`` against ``targets`` (one entry per image;
    ``ignores`` are crowd regions). An image set with no target at all is a ValueError."""
    from personkit.extras import require

    require("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not sum(len(t) for t in targets):
        raise ValueError("no ground-truth person to evaluate detection against")
    images, annotations, results = [], [], []
    for i, (boxes, ignore, dets) in enumerate(zip(targets, ignores, detections, strict=True)):
        images.append({"id": i + 1})
        for crowd, group in ((0, boxes), (1, ignore)):
            for box in np.asarray(group).reshape(-1, 4):
                xywh = _xywh(box)
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                    "category_id": 1, "bbox": xywh, "iscrowd": crowd,
                                    "area": xywh[2] * xywh[3]})
        results += [{"image_id": i + 1, "category_id": 1, "bbox": _xywh(d),
                     "score": float(d[4])} for d in np.asarray(dets).reshape(-1, 5)]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": 1, "name": "person"}]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt.createIndex()
        if not results:
            return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "images": len(images),
                    "persons": sum(len(t) for t in targets), "detections": 0}
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return {"AP": float(stats[0]), "AP50": float(stats[1]), "AP75": float(stats[2]),
            "images": len(images), "persons": sum(len(t) for t in targets),
            "detections": len(results)}
