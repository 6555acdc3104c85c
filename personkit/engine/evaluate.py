"""Run a model over evaluation sets and score them with the official protocols.

* ReID (Market-1501/Duke single query): embeddings of query and gallery, optionally averaged
  with their mirror images (flip TTA), scored by :class:`~personkit.metrics.ReidEvaluator`.
* Attributes (Market-1501 attribute protocol): predictions on gallery images with pid > 0.
* Pose (MPII / LIP PCKh): keypoints mapped back to original-image pixels through the inverse of
  each sample's affine, compared with the reader's joints and head sizes.
* Parts (LIP): the argmax is warped back to the original image (nearest) and accumulated in
  one confusion matrix; 20-class scores and the merged ``mIoU5`` come from the same predictions.

Evaluation shards the data over DDP ranks and gathers the per-sample results before scoring.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from personkit.data.constants import LIP_TO_MERGED5
from personkit.data.io import read_mask
from personkit.data.records import PersonRecord
from personkit.engine.distributed import gather_arrays, get_rank, get_world_size
from personkit.metrics import (
    LIP_UBODY_JOINTS,
    MPII_UBODY_JOINTS,
    AttributeEvaluator,
    PoseEvaluator,
    ReidEvaluator,
    SegmentationEvaluator,
)
from personkit.models import MultiTaskModel, PersonOutputs, flip_tta_embedding


@torch.no_grad()
def predict(model: MultiTaskModel, dataset: Dataset, heads: Sequence[str], *,
            device: torch.device | str = "cpu", batch_size: int = 64, num_workers: int = 0,
            flip_tta: bool = False, desc: str = "eval", progress: bool = True,
            ) -> Iterator[tuple[dict[str, torch.Tensor], PersonOutputs]]:
    """Yield ``(batch, outputs)`` over this rank's shard of ``dataset`` (outputs on the CPU).

    With ``flip_tta`` the embedding is the mean of the image's and its mirror's embeddings.
    """
    rank, world = get_rank(), get_world_size()
    shard = Subset(dataset, range(rank, len(dataset), world)) if world > 1 else dataset
    loader = DataLoader(shard, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    model.eval()
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress or rank != 0,
                      dynamic_ncols=True, leave=False):
        images = batch["image"].to(device)
        out = model(images, heads=heads)
        if flip_tta and out.embedding is not None:
            out.embedding = flip_tta_embedding(model, images, out.embedding)
        yield batch, _to_cpu(out)


def _to_cpu(out: PersonOutputs) -> PersonOutputs:
    moved = {k: (v.float().cpu() if torch.is_tensor(v) else v) for k, v in vars(out).items()}
    if moved["attributes"] is not None:
        moved["attributes"] = {k: v.float().cpu() for k, v in moved["attributes"].items()}
    return PersonOutputs(**moved)


def evaluate_reid_attributes(model: MultiTaskModel, query: Dataset, gallery: Dataset,
                             query_records: Sequence[PersonRecord],
                             gallery_records: Sequence[PersonRecord], *,
                             attribute_names: Sequence[str] | None = None,
                             flip_tta: bool = True, rerank: bool = False,
                             **loader: Any) -> dict[str, Any]:
    """Market-1501 single-query ReID and, when given ``attribute_names``, attribute accuracy.

    The datasets must return samples in record order with ``index``; pids and cameras are
    taken from the records (raw pids: -1 junk, 0 distractors).
    """
    heads = ["reid"] + (["attributes"] if attribute_names else [])
    results: dict[str, Any] = {}
    reid = ReidEvaluator(rerank=rerank)
    attr_pred: list[np.ndarray] = []
    attr_index: list[np.ndarray] = []
    for is_query, dataset, records in ((True, query, query_records),
                                       (False, gallery, gallery_records)):
        emb, idx = [], []
        for batch, out in predict(model, dataset, heads if not is_query else ["reid"],
                                  flip_tta=flip_tta, desc="query" if is_query else "gallery",
                                  **loader):
            emb.append(out.embedding.numpy())
            idx.append(batch["index"].numpy())
            if not is_query and attribute_names:
                attr_pred.append(np.stack([out.attributes[a].argmax(1).numpy()
                                           for a in attribute_names], axis=1))
                attr_index.append(batch["index"].numpy())
        index = gather_arrays(np.concatenate(idx))
        pids = np.array([records[i].pid for i in index])
        cams = np.array([records[i].camid for i in index])
        reid.process(gather_arrays(np.concatenate(emb)), pids, cams, is_query)
    results["reid"] = reid.evaluate()
    if attribute_names:
        index = gather_arrays(np.concatenate(attr_index))
        pred = gather_arrays(np.concatenate(attr_pred))
        gt = np.stack([gallery_records[i].attributes for i in index])
        pids = np.array([gallery_records[i].pid for i in index])
        evaluator = AttributeEvaluator(tuple(attribute_names))
        evaluator.process(pred, gt, pids)
        results["attributes"] = evaluator.evaluate()
    return results


def _to_original(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map B×J×2 input-pixel points through the inverse of each B×2×3 affine."""
    full = np.concatenate([affine, np.tile([[[0.0, 0.0, 1.0]]], (len(affine), 1, 1))], axis=1)
    inv = np.linalg.inv(full)[:, :2]
    return np.einsum("bij,bkj->bki", inv[:, :, :2], points) + inv[:, None, :, 2]


def evaluate_pose(model: MultiTaskModel, dataset: Dataset, records: Sequence[PersonRecord],
                  input_size: tuple[int, int], *, lip: bool = False,
                  **loader: Any) -> dict[str, Any]:
    """PCKh@0.5 (and @0.1) in original-image pixels; ``lip`` selects LIP's UBody joints."""
    preds, idx = [], []
    h, w = input_size
    for batch, out in predict(model, dataset, ["pose"], desc="pose", **loader):
        uv = out.keypoints.numpy().astype(np.float64)
        pixels = uv * np.array([w, h]) - 0.5
        preds.append(_to_original(pixels, batch["affine"].numpy().astype(np.float64)))
        idx.append(batch["index"].numpy())
    index = gather_arrays(np.concatenate(idx))
    pred = gather_arrays(np.concatenate(preds))
    gt = np.stack([records[i].joints for i in index])
    annotated = np.stack([records[i].joints_annotated for i in index])
    heads = np.array([np.nan if records[i].head_size is None else records[i].head_size
                      for i in index])
    evaluator = PoseEvaluator(ubody_joints=LIP_UBODY_JOINTS if lip else MPII_UBODY_JOINTS)
    evaluator.process(pred, np.nan_to_num(gt), annotated, heads)
    return evaluator.evaluate()


def evaluate_parts(model: MultiTaskModel, dataset: Dataset, records: Sequence[PersonRecord],
                   num_classes: int, class_names: Sequence[str] | None = None,
                   **loader: Any) -> dict[str, Any]:
    """Part segmentation at the original resolution: one confusion matrix over the whole set.

    A 20-class model is scored on LIP's 20 classes and, through the merge table, on the 5
    merged classes (``mIoU5``); a 5-class model is scored against merged ground truth.
    """
    merged_model = num_classes == 5
    evaluator = SegmentationEvaluator(num_classes, class_names,
                                      merge_lut=None if merged_model else LIP_TO_MERGED5[:20])
    for batch, out in predict(model, dataset, ["segmentation"], desc="parts", **loader):
        labels = out.parts.argmax(1).numpy().astype(np.uint8)
        for label, affine, i in zip(labels, batch["affine"].numpy(), batch["index"].numpy(),
                                    strict=True):
            gt = read_mask(records[int(i)].mask_path)
            if merged_model:
                gt = LIP_TO_MERGED5[gt]
            pred = cv2.warpAffine(label, affine.astype(np.float64), (gt.shape[1], gt.shape[0]),
                                  flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            evaluator.process(pred, gt)
    if get_world_size() > 1:
        evaluator.confusion = gather_arrays(evaluator.confusion[None]).sum(0)
    scores = evaluator.evaluate()
    if merged_model:
        scores["mIoU5"] = scores["mIoU"]
    return scores


def check_seg_labels(records: Sequence[PersonRecord]) -> None:
    """Every record must have a part mask (the ignore label alone is not a ground truth)."""
    missing = [str(r.image_path) for r in records if r.mask_path is None]
    if missing:
        raise ValueError(f"{len(missing)} records have no part mask, e.g. {missing[0]}")

