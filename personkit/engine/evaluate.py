"""Run a model over evaluation sets and score them with the official protocols
(:func:`run_evaluation`: a config's ``data.eval`` sets, each with the protocols its model's
heads allow).

* ReID (Market-1501/Duke single query): embeddings of query and gallery, optionally averaged
  with their mirror images (flip TTA), scored by :class:`~personkit.metrics.ReidEvaluator`.
* Attributes (Market-1501 attribute protocol): predictions on gallery images with pid > 0.
* Pose (MPII / LIP PCKh): keypoints mapped back to original-image pixels through the inverse of
  each sample's affine, compared with the reader's joints and head sizes.
* Parts (LIP): the argmax is warped back to the original image (nearest) and accumulated in
  one confusion matrix; 20-class scores and the merged ``mIoU5`` come from the same predictions.

Evaluation shards the data over DDP ranks and gathers the per-sample results before scoring.

Bad input: part labels get the checks of training (:func:`~personkit.data.dataset.check_mask`:
the image's size, LIP class ids), naming the file. With ``on_bad_image: skip`` an undecodable
image is *dropped* (never replaced by a neighbour, which would be scored twice): its record
leaves the evaluation (a dropped query or gallery image is absent from the ranking), and each
protocol's scores report ``num_bad_images``, also written to stderr.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from personkit.checkpoint import content_hash
from personkit.config import Config, DatasetConfig
from personkit.data.constants import LIP_TO_MERGED5
from personkit.data.dataset import PersonDataset, check_mask, collate_dropping_bad
from personkit.data.datasets import dataset_spec
from personkit.data.io import read_mask
from personkit.data.records import PersonRecord
from personkit.engine.datasets import person_dataset, read_records
from personkit.engine.distributed import gather_arrays, get_rank, get_world_size
from personkit.metrics import (
    LIP_UBODY_JOINTS,
    MPII_UBODY_JOINTS,
    AttributeEvaluator,
    PoseEvaluator,
    ReidEvaluator,
    SegmentationEvaluator,
)
from personkit.metrics.attributes import attribute_accuracy, calibrate_thresholds
from personkit.models import MultiTaskModel, PersonOutputs, flip_tta_embedding
from personkit.models.identity import (
    TRACK_KEYS,
    model_identity,
    read_calibrations,
    write_calibration,
)


@torch.no_grad()
def predict(model: MultiTaskModel, dataset: Dataset, heads: Sequence[str], *,
            device: torch.device | str = "cpu", batch_size: int = 64, num_workers: int = 0,
            flip_tta: bool = False, desc: str = "eval", progress: bool = True,
            dropped: list[int] | None = None,
            ) -> Iterator[tuple[dict[str, torch.Tensor], PersonOutputs]]:
    """Yield ``(batch, outputs)`` over this rank's shard of ``dataset`` (outputs on the CPU).

    With ``flip_tta`` the embedding is the mean of the image's and its mirror's embeddings.
    A :class:`PersonDataset` that skips bad images drops them instead: their record indices
    are appended to ``dropped`` and the batches hold only the decoded samples.
    """
    rank, world = get_rank(), get_world_size()
    if isinstance(dataset, PersonDataset):
        dataset = dataset.dropping_bad()
    shard = Subset(dataset, range(rank, len(dataset), world)) if world > 1 else dataset
    loader = DataLoader(shard, batch_size=batch_size, num_workers=num_workers, shuffle=False,
                        collate_fn=collate_dropping_bad)
    model.eval()
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress or rank != 0,
                      dynamic_ncols=True, leave=False):
        if dropped is not None:
            dropped.extend(batch["dropped"])
        del batch["dropped"]
        if "image" not in batch:
            continue
        images = batch["image"].to(device)
        out = model(images, heads=heads)
        if flip_tta and out.embedding is not None:
            out.embedding = flip_tta_embedding(model, images, out.embedding)
        yield batch, _to_cpu(out)


def in_evaluation_layout(model: Any) -> Any:
    """``model``, or a contiguous-format copy of it when its weights are channels_last.

    Evaluation runs one memory format, whatever training used (``train.channels_last``): the
    two formats pick different convolution kernels, whose float sums differ in the last bits,
    and near-tied gallery items can then swap. So the scores of a model evaluated in the
    training process equal those of ``personkit eval`` on its saved weights, on every CPU.
    """
    if not isinstance(model, torch.nn.Module):
        return model
    if not any(p.dim() == 4 and not p.is_contiguous() for p in model.parameters()):
        return model
    return copy.deepcopy(model).to(memory_format=torch.contiguous_format)


def _count_dropped(dropped: list[int], what: str) -> int:
    """Records dropped over all ranks (``on_bad_image: skip``), reported on stderr."""
    count = int(gather_arrays(np.asarray(dropped, dtype=np.int64)).size)
    if count and get_rank() == 0:
        print(f"{what}: {count} undecodable image(s) skipped and left out of the scores "
              f"(on_bad_image: skip)", file=sys.stderr)
    return count


def _gather_index(parts: list[np.ndarray]) -> np.ndarray:
    return gather_arrays(np.concatenate(parts) if parts else np.zeros(0, np.int64))


def _to_cpu(out: PersonOutputs) -> PersonOutputs:
    moved = {k: (v.float().cpu() if torch.is_tensor(v) else v) for k, v in vars(out).items()}
    if moved["attributes"] is not None:
        moved["attributes"] = {k: v.float().cpu() for k, v in moved["attributes"].items()}
    return PersonOutputs(**moved)


def evaluate_reid_attributes(model: MultiTaskModel, query: Dataset, gallery: Dataset,
                             query_records: Sequence[PersonRecord],
                             gallery_records: Sequence[PersonRecord], *, reid: bool = True,
                             attribute_names: Sequence[str] | None = None,
                             flip_tta: bool = True, rerank: bool = False,
                             **loader: Any) -> dict[str, Any]:
    """Market-1501 single-query ReID (when ``reid``, with the calibrated same-person threshold
    under ``match``: :mod:`personkit.metrics.matching`) and, when given ``attribute_names``,
    attribute accuracy; either may be off, so a model without a ReID head (the Table 2
    attribute-only baseline) is scored on attributes alone.

    The datasets must return samples in record order with ``index``; pids and cameras are
    taken from the records (raw pids: -1 junk, 0 distractors).
    """
    results: dict[str, Any] = {}
    dropped: dict[str, list[int]] = {"query": [], "gallery": []}
    if reid:
        emb, idx = _embed(model, query, ["reid"], flip_tta, "query", loader, dropped["query"])
        evaluator = ReidEvaluator(rerank=rerank)
        evaluator.process(emb, *_pids_cams(query_records, idx), True)
    if not reid and not attribute_names:
        return results
    heads = (["reid"] if reid else []) + (["attributes"] if attribute_names else [])
    emb_g, idx_g, attr_pred = [], [], []
    for batch, out in predict(model, gallery, heads, flip_tta=flip_tta and reid,
                              desc="gallery", dropped=dropped["gallery"], **loader):
        idx_g.append(batch["index"].numpy())
        if reid:
            emb_g.append(out.embedding.numpy())
        if attribute_names:
            attr_pred.append(np.concatenate([out.attributes[a].float().softmax(1).numpy()
                                             for a in attribute_names], axis=1))
    index = _nonempty(_gather_index(idx_g), "gallery")
    order = np.argsort(index, kind="stable")  # record order, as in one process: see _embed
    index = index[order]
    bad = {what: _count_dropped(d, what) for what, d in dropped.items()}
    if reid:
        evaluator.process(gather_arrays(np.concatenate(emb_g))[order],
                          *_pids_cams(gallery_records, index), False)
        results["reid"] = {**evaluator.evaluate(), "num_bad_images": bad["query"] + bad["gallery"],
                           "num_bad_query": bad["query"], "num_bad_gallery": bad["gallery"]}
        try:
            results["match"] = evaluator.match_calibration()
            results["match"]["tracks"] = evaluator.track_calibration()
        except ValueError as e:  # too few identities or cameras: the ReID scores still stand
            if get_rank() == 0:
                print(f"eval: no same-person threshold: {e}", file=sys.stderr)
    if attribute_names:
        probs = gather_arrays(np.concatenate(attr_pred))[order]
        gt = np.stack([gallery_records[i].attributes for i in index])
        pids = np.array([gallery_records[i].pid for i in index])
        results["attributes"] = {**score_attributes(probs, gt, pids, model.meta.attributes,
                                                    attribute_names),
                                 "num_bad_images": bad["gallery"]}
    return results


def score_attributes(probs: np.ndarray, gt: np.ndarray, pids: np.ndarray,
                     classes: dict[str, Sequence[str]],
                     names: Sequence[str]) -> dict[str, Any]:
    """The attribute protocol on ``N x sum(C)`` class probabilities: the arg-max decisions'
    scores (:func:`~personkit.metrics.attributes.attribute_accuracy`: the official accuracy
    and the balanced ones), and ``calibrated``: each binary attribute's decision threshold on
    its positive probability (maximising balanced accuracy where that validates across two
    halves of the identities, else 0.5:
    :func:`~personkit.metrics.attributes.calibrate_thresholds`) with the scores of decisions
    taken by thresholds fitted on the other half of the identities (``thresholds``: fitted on
    all, what ``calibration.json`` keeps for the model)."""
    splits = np.cumsum([len(classes[a]) for a in names])[:-1]
    per = np.split(probs, splits, axis=1)
    pred = np.stack([p.argmax(1) for p in per], axis=1)
    official = {n: classes[n] for n in names}
    scorer = AttributeEvaluator(official)
    scorer.process(pred, gt, pids)
    out: dict[str, Any] = scorer.evaluate()
    binary = [i for i, n in enumerate(names) if len(classes[n]) == 2]
    keep = pids > 0
    if binary and keep.any():
        bnames = [names[i] for i in binary]
        thresholds, decided = calibrate_thresholds(
            np.stack([per[i][keep, 1] for i in binary], 1), gt[keep][:, binary], bnames,
            pids[keep])
        tuned = attribute_accuracy(decided, gt[keep][:, binary], {n: classes[n] for n in bnames})
        out["calibrated"] = {"rule": "max balanced accuracy where it validates, else 0.5; "
                                     "2-fold cross-fitted by identity",
                             "thresholds": {n: round(t, 6) for n, t in thresholds.items()},
                             **{k: v for k, v in tuned.items() if not k.startswith("acc/")
                                and k != "mean"}}
    return out


def _embed(model: MultiTaskModel, dataset: Dataset, heads: Sequence[str], flip_tta: bool,
           desc: str, loader: dict[str, Any], dropped: list[int],
           ) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and record indices of ``dataset``, gathered over DDP ranks; undecodable
    records (``on_bad_image: skip``) are appended to ``dropped``."""
    emb, idx = [], []
    for batch, out in predict(model, dataset, heads, flip_tta=flip_tta, desc=desc,
                              dropped=dropped, **loader):
        emb.append(out.embedding.numpy())
        idx.append(batch["index"].numpy())
    index = _nonempty(_gather_index(idx), desc)
    # Back in record order: DDP ranks gather their shards rank by rank, and the ranking's
    # stable tie-break (the official protocol's) must see the gallery in one process's order.
    order = np.argsort(index, kind="stable")
    return gather_arrays(np.concatenate(emb))[order], index[order]


def _nonempty(index: np.ndarray, what: str) -> np.ndarray:
    if not len(index):
        raise ValueError(f"no {what} image could be decoded")
    return index


def _pids_cams(records: Sequence[PersonRecord], index: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([records[i].pid for i in index]),
            np.array([records[i].camid for i in index]))


def _to_original(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map B×J×2 input-pixel points through the inverse of each B×2×3 affine."""
    full = np.concatenate([affine, np.tile([[[0.0, 0.0, 1.0]]], (len(affine), 1, 1))], axis=1)
    inv = np.linalg.inv(full)[:, :2]
    return np.einsum("bij,bkj->bki", inv[:, :, :2], points) + inv[:, None, :, 2]


def evaluate_pose(model: MultiTaskModel, dataset: Dataset, records: Sequence[PersonRecord],
                  input_size: tuple[int, int], *, lip: bool = False,
                  **loader: Any) -> dict[str, Any]:
    """PCKh@0.5 (and @0.1) in original-image pixels; ``lip`` selects LIP's UBody joints."""
    preds, idx, dropped = [], [], []
    h, w = input_size
    for batch, out in predict(model, dataset, ["pose"], desc="pose", dropped=dropped, **loader):
        uv = out.keypoints.numpy().astype(np.float64)
        pixels = uv * np.array([w, h]) - 0.5
        preds.append(_to_original(pixels, batch["affine"].numpy().astype(np.float64)))
        idx.append(batch["index"].numpy())
    num_bad = _count_dropped(dropped, "pose")
    index = _gather_index(idx)
    if not len(index):
        raise ValueError("pose: no image could be decoded")
    pred = gather_arrays(np.concatenate(preds))
    gt = np.stack([records[i].joints for i in index])
    annotated = np.stack([records[i].joints_annotated for i in index])
    heads = np.array([np.nan if records[i].head_size is None else records[i].head_size
                      for i in index])
    evaluator = PoseEvaluator(ubody_joints=LIP_UBODY_JOINTS if lip else MPII_UBODY_JOINTS)
    evaluator.process(pred, np.nan_to_num(gt), annotated, heads)
    scores = evaluator.evaluate()
    if scores["num_skipped"] and get_rank() == 0:
        print(f"pose: {scores['num_skipped']} of {len(index)} persons have no usable head size "
              f"({scores['num_zero_head_size']} of them zero, e.g. a zero-area head box) and "
              f"are left out of PCKh", file=sys.stderr)
    return {**scores, "num_bad_images": num_bad}


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
    dropped: list[int] = []
    for batch, out in predict(model, dataset, ["segmentation"], desc="parts", dropped=dropped,
                              **loader):
        labels = out.parts.argmax(1).numpy().astype(np.uint8)
        for label, affine, i in zip(labels, batch["affine"].numpy(), batch["index"].numpy(),
                                    strict=True):
            r = records[int(i)]
            gt = check_mask(read_mask(r.mask_path), r.mask_path, _image_shape(r.image_path),
                            r.image_path)
            if merged_model:
                gt = LIP_TO_MERGED5[gt]
            pred = cv2.warpAffine(label, affine.astype(np.float64), (gt.shape[1], gt.shape[0]),
                                  flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            evaluator.process(pred, gt)
    if get_world_size() > 1:
        evaluator.confusion = gather_arrays(evaluator.confusion[None]).sum(0)
    num_bad = _count_dropped(dropped, "parts")
    scores = evaluator.evaluate()
    if merged_model:
        scores["mIoU5"] = scores["mIoU"]
    scores["num_bad_images"] = num_bad
    return scores


def _image_shape(path: Any) -> tuple[int, int]:
    """(H, W) of an image file from its header (the image itself was decoded already)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width


def check_seg_labels(records: Sequence[PersonRecord]) -> None:
    """Every record must have a part mask (the ignore label alone is not a ground truth)."""
    missing = [str(r.image_path) for r in records if r.mask_path is None]
    if missing:
        raise ValueError(f"{len(missing)} records have no part mask, e.g. {missing[0]}")


def check_eval_settings(cfg: Config) -> None:
    """``train.eval_every`` needs ``data.eval`` sets; ``train.best_metric`` must name one of
    them and a protocol it runs for this model (``<dataset>.<protocol>.<score>``)."""
    if not cfg.train.eval_every:
        return
    if not cfg.data.eval:
        raise ValueError("train.eval_every is set but the config has no data.eval datasets")
    metric = cfg.train.best_metric
    if metric is None:
        return
    runs = {f"{d.name}.{p}" for d in cfg.data.eval for p in eval_protocols(d, cfg.model.heads)}
    if metric.count(".") < 2 or metric.rsplit(".", 1)[0] not in runs:
        raise ValueError(f"train.best_metric {metric!r} must be '<dataset>.<protocol>.<score>' "
                         f"with a dataset and protocol the evaluation runs: {sorted(runs)} "
                         f"(e.g. market.reid.mAP, lip.parts.mIoU, mpii.pose.Mean)")


def eval_protocols(d: DatasetConfig, heads: Sequence[str]) -> tuple[str, ...]:
    """The protocols :func:`run_evaluation` runs on ``d`` for a model with ``heads``."""
    if d.type != "fake" and dataset_spec(d.type).protocol == "reid":
        return tuple(p for p, on in (
            ("reid", "reid" in heads and (not d.tasks or "reid" in d.tasks)),
            ("attributes", "attributes" in heads and "attributes" in d.tasks)) if on)
    return tuple(p for p, task in (("pose", "pose"), ("parts", "segmentation"))
                 if task in heads and task in d.tasks)


def run_evaluation(model: MultiTaskModel, cfg: Config, names: Sequence[str] | None = None,
                   data_root: str | Path | None = None, device: str | torch.device = "cpu",
                   batch_size: int = 64, flip_tta: bool = True,
                   progress: bool = True) -> dict[str, dict[str, Any]]:
    """Evaluate ``model`` on the ``data.eval`` entries (all, or those named) with the official
    protocols; returns ``{dataset name: {protocol: scores}}``.

    A set none of whose protocols the model can run (a ReID-only export and a pose set) is an
    error when named, and otherwise left out of the results with a note on stderr; a model that
    can run nothing on any set is an error."""
    if not cfg.data.eval:
        raise ValueError("the config has no evaluation datasets (data.eval is empty): add "
                         "data.eval entries to the run's config.yaml")
    entries = [d for d in cfg.data.eval if names is None or d.name in names]
    unknown = sorted(set(names or ()) - {d.name for d in cfg.data.eval})
    if unknown:
        raise ValueError(f"no evaluation dataset named {unknown}; the config has "
                         f"{[d.name for d in cfg.data.eval]}")
    entries = _runnable(entries, model.enabled, explicit=names is not None)
    data_root = data_root or cfg.data.root or None
    model = in_evaluation_layout(model)
    loader = {"device": device, "batch_size": batch_size, "progress": progress,
              "num_workers": cfg.data.num_workers}
    results: dict[str, dict[str, Any]] = {}
    for d in entries:
        out: dict[str, Any] = {}
        protocols = eval_protocols(d, model.enabled)  # each only where the model has its head
        if dataset_spec(d.type).protocol == "reid":
            reid = "reid" in protocols
            attrs = tuple(model.meta.attributes) if "attributes" in protocols else None
            if reid or attrs:
                query, gallery = (read_records(d, s, data_root) for s in ("query", "gallery"))
                out.update(evaluate_reid_attributes(
                    model, person_dataset(d, query, cfg, False),
                    person_dataset(d, gallery, cfg, False), query, gallery, reid=reid,
                    attribute_names=attrs, flip_tta=flip_tta, **loader))
        else:
            records = read_records(d, None, data_root)
            dataset = person_dataset(d, records, cfg, False)
            if "pose" in protocols:
                out["pose"] = evaluate_pose(model, dataset, records, d.input_size,
                                               lip=dataset_spec(d.type).protocol == "lip",
                                               **loader)
            if "parts" in protocols:
                check_seg_labels(records)
                out["parts"] = evaluate_parts(model, dataset, records, cfg.model.seg_classes,
                                                 model.meta.part_classes, **loader)
        results[d.name] = out
    return results


def _runnable(entries: list[DatasetConfig], heads: Sequence[str],
              explicit: bool) -> list[DatasetConfig]:
    """The entries with at least one protocol ``heads`` can run (see :func:`run_evaluation`)."""
    idle = [d for d in entries if not eval_protocols(d, heads)]
    if idle and (explicit or len(idle) == len(entries)):
        raise ValueError("; ".join(
            f"dataset {d.name!r} (tasks {list(d.tasks)}) has no protocol this model can run: "
            f"its heads are {list(heads)}" for d in idle))
    for d in idle:
        if get_rank() == 0:
            print(f"eval: {d.name} left out: none of its tasks {list(d.tasks)} has a head in "
                  f"this model ({list(heads)})", file=sys.stderr)
    return [d for d in entries if d not in idle]


def save_match_calibration(results: dict[str, dict[str, Any]], model: MultiTaskModel,
                           model_path: str | Path, flip_tta: bool = True) -> Path | None:
    """Store the same-person thresholds of the first ReID set in ``results`` (its ``match``:
    crop against crop, and ``tracks``: between track means) and the attribute decision
    thresholds (``attribute_thresholds``) for ``model``'s embedding space in ``model_path``'s
    ``calibration.json`` (keeping the record's ``track_attributes`` and ``track_match``,
    fitted on these weights' video track means: :mod:`personkit.track.calibrate`)
    (:mod:`personkit.models.identity`), where ``track --gallery`` finds it; None when no set
    gave one. Call it on the process that owns the run directory, for the model in torch."""
    name = next((n for n, r in results.items() if "match" in r), None)
    if name is None:
        return None
    weights = content_hash(model.state_dict())
    record = {**results[name]["match"], "dataset": name, "weights": weights,
              "flip_tta": bool(flip_tta)}
    tuned = next((r["attributes"]["calibrated"]["thresholds"] for r in results.values()
                  if "calibrated" in r.get("attributes", {})), None)
    if tuned is not None:  # each binary attribute's decision threshold (personkit.metrics)
        record["attribute_thresholds"] = tuned
    identity = model_identity(model.meta, weights, flip_tta)
    earlier = read_calibrations(model_path).get(identity, {})
    # fitted on video track means of these weights (personkit.track.calibrate): still theirs
    record.update({k: earlier[k] for k in TRACK_KEYS if k in earlier})
    return write_calibration(model_path, identity, record)
