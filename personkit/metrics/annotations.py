"""Quality of automatic (pseudo) annotations against a ground truth in the same format.

The paper (Pfeiffer et al., GCPR 2019, Sec. 4.1) trains on pose and part predictions of
MPII/LIP baselines on the Market training crops, but could not measure how good they are. The
synthetic world can: ``personkit synth`` writes the true joints and parts of every Market crop
to ``<Market root>/hidden_truth`` in the ``market_auto`` format (docs/datasets.md), and
:func:`score_annotations` compares an ``auto_annotations`` folder with it:

* pose: PCKh of the official MPII toolkit (:func:`personkit.metrics.pose.pckh`) with the LIP
  head size (head top to upper neck, no factor: a crop has no head box), over the truth's
  joints inside the crop; a crop or joint without a prediction counts as a miss;
* parts: one confusion matrix over all pixels (SCHP/CE2P formulas), mIoU over the 20 LIP
  classes and mIoU5 over the paper's 5 merged classes; a crop without a predicted PNG, and
  predicted pixels marked unknown (255), count as background.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from personkit.data.constants import LIP_CLASSES, LIP_TO_MERGED5, NUM_JOINTS, SEG_IGNORE
from personkit.data.datasets.market_auto import read_auto_pose
from personkit.data.io import read_mask
from personkit.metrics.pose import LIP_UBODY_JOINTS, lip_head_size, pckh
from personkit.metrics.segmentation import confusion_matrix, merge_confusion, segmentation_scores

#: The Market folders scored by default: the training crops the paper annotates.
DEFAULT_FOLDERS: tuple[str, ...] = ("bounding_box_train",)


def score_annotations(auto_dir: str | Path, truth_dir: str | Path,
                      folders: Sequence[str] = DEFAULT_FOLDERS) -> dict[str, Any]:
    """Score the ``market_auto`` folder ``auto_dir`` against ``truth_dir`` (same format).

    Returns:
        ``pose``: :func:`pckh` scores plus ``num_images`` and ``num_missing`` (truth rows
        without a predicted row); ``parts``: ``mIoU``, ``mIoU5``, ``pixel_acc``, per-class
        ``IoU/<name>``, ``num_images`` and ``num_missing``; and the headline ``summary``
        (``PCKh@0.5``, ``mIoU``, ``mIoU5``).

    Raises:
        FileNotFoundError: a folder or its ``pose.csv`` is missing.
        ValueError: nothing of ``folders`` is in the truth, or a mask's size differs.
    """
    auto_dir, truth_dir = Path(auto_dir), Path(truth_dir)
    for d in (auto_dir, truth_dir):
        if not (d / "pose.csv").is_file():
            raise FileNotFoundError(f"{d}: not a market_auto folder (no pose.csv)")
    pose = _score_pose(auto_dir / "pose.csv", truth_dir / "pose.csv", folders)
    parts = _score_parts(auto_dir / "parts", truth_dir / "parts", folders)
    return {"pose": pose, "parts": parts,
            "summary": {"PCKh@0.5": pose["Mean"], "mIoU": parts["mIoU"],
                        "mIoU5": parts["mIoU5"]}}


def _in_folders(image: str, folders: Sequence[str]) -> bool:
    return image.split("/", 1)[0] in folders


def _score_pose(auto_csv: Path, truth_csv: Path, folders: Sequence[str]) -> dict[str, Any]:
    truth = {k: v for k, v in read_auto_pose(truth_csv).items() if _in_folders(k, folders)}
    if not truth:
        raise ValueError(f"{truth_csv}: no rows in {', '.join(folders)}")
    auto = read_auto_pose(auto_csv)
    names = sorted(truth)
    missing = np.full((NUM_JOINTS, 2), np.nan, np.float32)
    gt = np.stack([truth[n][0] for n in names])
    annotated = np.stack([truth[n][1] for n in names])
    pred = np.stack([auto[n][0] if n in auto else missing for n in names])
    scores = pckh(pred, gt, annotated, lip_head_size(gt, annotated),
                  ubody_joints=LIP_UBODY_JOINTS)
    return {**scores, "num_images": len(names),
            "num_missing": sum(n not in auto for n in names)}


def _score_parts(auto_parts: Path, truth_parts: Path, folders: Sequence[str]
                 ) -> dict[str, Any]:
    n = len(LIP_CLASSES)
    conf = np.zeros((n, n), dtype=np.int64)
    count = missing = 0
    for folder in folders:
        for gt_path in sorted((truth_parts / folder).glob("*.png")):
            gt = read_mask(gt_path)
            pred_path = auto_parts / folder / gt_path.name
            if pred_path.is_file():
                pred = read_mask(pred_path)
                if pred.shape != gt.shape:
                    raise ValueError(f"{pred_path}: size {pred.shape} differs from the "
                                     f"truth's {gt.shape}")
                pred = np.where((pred == SEG_IGNORE) | (pred >= n), 0, pred)
            else:
                pred, missing = np.zeros_like(gt), missing + 1
            conf += confusion_matrix(pred, gt, n)
            count += 1
    if not count:
        raise ValueError(f"{truth_parts}: no part masks in {', '.join(folders)}")
    scores = segmentation_scores(conf, LIP_CLASSES)
    merged = segmentation_scores(merge_confusion(conf, LIP_TO_MERGED5))
    return {"mIoU": scores["mIoU"], "mIoU5": merged["mIoU"], "pixel_acc": scores["pixel_acc"],
            **{k: v for k, v in scores.items() if k.startswith("IoU/")},
            "num_images": count, "num_missing": missing}


def format_scores(result: dict[str, Any]) -> str:
    """:func:`score_annotations`'s headline numbers in two lines (pose, parts)."""
    pose, parts = result["pose"], result["parts"]
    return (f"pose : PCKh@0.5 {pose['Mean']:.4f}  UBody {pose['UBody']:.4f}  "
            f"({pose['num_images']} crops, {pose['num_missing']} without a prediction)\n"
            f"parts: mIoU {parts['mIoU']:.4f}  mIoU5 {parts['mIoU5']:.4f}  pixel acc "
            f"{parts['pixel_acc']:.4f}  ({parts['num_images']} crops, {parts['num_missing']} "
            f"without a mask)")
