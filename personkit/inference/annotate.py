"""Automatic pose and part annotations of a Market-style set (Pfeiffer et al., GCPR 2019,
Sec. 4.1 and Table 5): ``personkit annotate``.

A pose model (e.g. an MPII baseline) and a parts model (e.g. a LIP baseline, 20 classes; one
run may serve both) predict on every crop of the chosen splits. Each crop goes through each
model's own preprocessing with its aspect ratio kept: scaled to fit the model's input size and
centred on a mean-colour pad (letterbox), and the predictions are mapped back through the
inverse of that affine to the crop's pixels. With ``flip`` the mirrored crop is predicted too
(left/right joints and part classes swapped back) and averaged: joints and confidences, and
the part probabilities.

Output: the ``market_auto`` format (:mod:`personkit.data.datasets.market_auto`) plus
``manifest.json`` (source weight files, their SHA-256, options, counts). The folder is built
under a temporary name next to ``out`` and renamed into place at the end, so an error or a
kill leaves no partial annotation folder. The output is a pure function of the weights, the
images and the options (no timestamps); an existing folder with different content is
replaced only with ``force``, and only when it is personkit's own (its ``manifest.json`` says
``market_auto``): never the Market root, a folder holding it, or anything else.
"""

from __future__ import annotations

import filecmp
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from personkit.checkpoint import sha256_file, write_json
from personkit.data.constants import LIP_FLIP_PAIRS, MPII_FLIP_PAIRS
from personkit.data.datasets.market1501 import REID_SPLITS, dataset_root, read_market1501
from personkit.data.datasets.market_auto import AutoAnnotation, write_market_auto
from personkit.data.io import read_image
from personkit.models import MultiTaskModel
from personkit.models.loading import load_model, resolve_model_file
from personkit.runtime import resolve_device

FORMAT_VERSION = 1


class AnnotateError(ValueError):
    """Annotations that would overwrite different ones (without ``force``)."""


@dataclass
class AnnotateSummary:
    out: Path
    images: int
    unchanged: bool  # the folder already held exactly these annotations


def letterbox_affine(height: int, width: int, input_size: tuple[int, int]) -> np.ndarray:
    """2×3 affine from crop pixel centres to input pixel centres: uniform scale to fit the
    input, centred (the rest is padding)."""
    in_h, in_w = input_size
    s = min(in_h / height, in_w / width)
    ox, oy = (in_w - s * width) / 2, (in_h - s * height) / 2
    return np.array([[s, 0, ox + 0.5 * s - 0.5], [0, s, oy + 0.5 * s - 0.5]], np.float64)


def _swap(n: int, pairs: Sequence[tuple[int, int]]) -> list[int]:
    order = list(range(n))
    for a, b in pairs:
        if b < n:
            order[a], order[b] = b, a
    return order


class _ModelRunner:
    """One model's preprocessing and the mapping of its outputs back to crop pixels."""

    def __init__(self, model: MultiTaskModel, heads: Sequence[str], device: torch.device,
                 flip: bool):
        self.model, self.heads, self.device, self.flip = model.eval(), list(heads), device, flip
        meta = model.meta
        self.size = tuple(meta.input_size)
        self.mean = np.asarray(meta.mean, np.float32)
        self.std = np.asarray(meta.std, np.float32)
        self.pad = tuple(float(v) for v in self.mean * 255)

    @torch.no_grad()
    def __call__(self, crops: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        h, w = self.size
        affines = [letterbox_affine(c.shape[0], c.shape[1], self.size) for c in crops]
        inputs = np.stack([cv2.warpAffine(c, a, (w, h), flags=cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_CONSTANT, borderValue=self.pad)
                           for c, a in zip(crops, affines, strict=True)]).astype(np.float32)
        x = torch.from_numpy(((inputs / 255 - self.mean) / self.std).transpose(0, 3, 1, 2))
        x = x.contiguous().to(self.device)
        out = self._forward(x)
        results = []
        for i, (crop, affine) in enumerate(zip(crops, affines, strict=True)):
            results.append(self._to_crop(out, i, crop.shape[:2], affine))
        return results

    def _forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(x, heads=self.heads)
        res: dict[str, torch.Tensor] = {}
        if "pose" in self.heads:
            res["uv"], res["conf"] = out.keypoints.float(), out.keypoint_scores.float()
        if "segmentation" in self.heads:
            res["probs"] = out.parts.float().softmax(1)
        if self.flip:
            mirrored = self.model(torch.flip(x, dims=[3]), heads=self.heads)
            if "pose" in self.heads:
                order = _swap(res["uv"].shape[1], MPII_FLIP_PAIRS)
                uv = mirrored.keypoints.float()[:, order]
                uv = torch.stack([1 - uv[..., 0], uv[..., 1]], -1)  # u -> 1 - u (pixel centres)
                res["uv"] = (res["uv"] + uv) / 2
                res["conf"] = (res["conf"] + mirrored.keypoint_scores.float()[:, order]) / 2
            if "segmentation" in self.heads:
                probs = mirrored.parts.float().softmax(1)
                probs = torch.flip(probs[:, _swap(probs.shape[1], LIP_FLIP_PAIRS)], dims=[3])
                res["probs"] = (res["probs"] + probs) / 2
        return {k: v.cpu() for k, v in res.items()}

    def _to_crop(self, out: dict[str, torch.Tensor], i: int, shape: tuple[int, int],
                 affine: np.ndarray) -> dict[str, np.ndarray]:
        h, w = self.size
        inv = cv2.invertAffineTransform(affine)
        res = {}
        if "uv" in out:
            pixels = out["uv"][i].numpy().astype(np.float64) * np.array([w, h]) - 0.5
            res["joints"] = pixels @ inv[:, :2].T + inv[:, 2]
            res["confidence"] = out["conf"][i].numpy().astype(np.float64)
        if "probs" in out:
            labels = out["probs"][i].argmax(0).numpy().astype(np.uint8)
            res["parts"] = cv2.warpAffine(labels, affine, (shape[1], shape[0]),
                                          flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                          borderMode=cv2.BORDER_REPLICATE)
        return res


def _load(source: str | Path, head: str, role: str) -> tuple[MultiTaskModel, Path]:
    path = resolve_model_file(source)
    model = load_model(path, "cpu")
    _check(model, source, head, role)
    return model, path


def _check(model: MultiTaskModel, source: str | Path, head: str, role: str) -> None:
    if head not in model.enabled:
        raise ValueError(f"--{role} {source}: this model has no {head!r} head (its heads: "
                         f"{list(model.enabled)}); give a {role} model")
    if head == "segmentation" and len(model.meta.part_classes) != 20:
        raise ValueError(f"--parts {source}: the model predicts {len(model.meta.part_classes)} "
                         f"part classes; market_auto stores LIP's 20 (train with "
                         f"model.seg_classes: 20; the 5-class merge happens at read time)")


def market_image_root(root: str | Path, splits: Sequence[str]) -> Path:
    """The Market folder holding the split folders; an error names a missing one."""
    market = dataset_root(Path(root), "Market-1501-v15.09.15")
    for split in splits:
        if split not in REID_SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {sorted(REID_SPLITS)}")
        if not (market / REID_SPLITS[split]).is_dir():
            raise FileNotFoundError(f"--root {root}: no {REID_SPLITS[split]}/ folder in "
                                    f"{market} (not a Market-1501 root)")
    return market


def annotate_market(pose: str | Path, parts: str | Path, root: str | Path,
                    out: str | Path | None = None, *, splits: Sequence[str] = ("train",),
                    flip: bool = False, force: bool = False, batch_size: int = 32,
                    device: str | torch.device = "auto", progress: bool = True) -> AnnotateSummary:
    """Write the ``market_auto`` annotations of ``splits`` of the Market set at ``root`` to
    ``out`` (default ``<Market root>/auto_annotations``); see the module docstring."""
    market = market_image_root(root, splits)
    out = Path(out) if out is not None else market / "auto_annotations"
    check_out(out, market)
    pose_model, pose_path = _load(pose, "pose", "pose")
    same = Path(pose_path).resolve() == resolve_model_file(parts).resolve()
    parts_model, parts_path = (pose_model, pose_path) if same else _load(parts, "segmentation",
                                                                         "parts")
    _check(parts_model, parts, "segmentation", "parts")
    device = resolve_device(device)
    runners = ([_ModelRunner(pose_model.to(device), ["pose", "segmentation"], device, flip)]
               if same else [_ModelRunner(pose_model.to(device), ["pose"], device, flip),
                             _ModelRunner(parts_model.to(device), ["segmentation"], device,
                                          flip)])
    records = [(split, r) for split in splits
               for r in read_market1501(market, split, attributes=False)]
    manifest = {
        "format": "market_auto", "version": FORMAT_VERSION, "splits": list(splits),
        "flip": flip, "images": len(records),
        "pose": {"weights": str(pose_path), "sha256": sha256_file(pose_path),
                 "input_size": list(pose_model.meta.input_size)},
        "parts": {"weights": str(parts_path), "sha256": sha256_file(parts_path),
                  "input_size": list(parts_model.meta.input_size), "classes": 20},
        "preprocessing": "letterbox (aspect ratio kept, mean-colour pad), mapped back",
    }
    staging = out.with_name(f".tmp_{out.name}")
    shutil.rmtree(staging, ignore_errors=True)  # left by a killed run
    try:
        bar = tqdm(total=len(records), desc="annotate", unit="crop", disable=not progress,
                   dynamic_ncols=True)
        with bar:
            count = write_market_auto(staging, _annotations(records, runners, batch_size, bar))
        write_json(staging / "manifest.json", manifest)
        unchanged = _install(staging, out, force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return AnnotateSummary(out, count, unchanged)


def _annotations(records: Sequence[tuple[str, Any]], runners: Sequence[_ModelRunner],
                 batch_size: int, bar: Any) -> Iterator[AutoAnnotation]:
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        crops = [read_image(r.image_path) for _, r in chunk]
        merged: list[dict[str, np.ndarray]] = [{} for _ in chunk]
        for runner in runners:
            for m, res in zip(merged, runner(crops), strict=True):
                m.update(res)
        for (split, r), m in zip(chunk, merged, strict=True):
            yield AutoAnnotation(f"{REID_SPLITS[split]}/{r.image_path.name}",
                                 m["joints"], m["confidence"], m["parts"])
        bar.update(len(chunk))


def _is_annotation_folder(path: Path) -> bool:
    """Whether ``path`` holds personkit's annotations (its manifest says so)."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == "market_auto"


def check_out(out: Path, market: Path) -> None:
    """Before any work: ``out`` may be new, an empty folder or personkit's annotations; never
    the Market root, a folder holding it, or a folder of anything else (``force`` replaces
    personkit's annotations only)."""
    target = out.resolve()
    if target == market.resolve() or target in market.resolve().parents:
        raise AnnotateError(f"--out {out} is (or holds) the Market root {market}: annotations "
                            f"go into a folder of their own, e.g. {market / 'auto_annotations'}")
    if out.exists() and not (out.is_dir() and (_is_annotation_folder(out)
                                               or not any(out.iterdir()))):
        raise AnnotateError(f"--out {out} exists and is not a personkit annotation folder (no "
                            f"manifest.json of format market_auto): personkit replaces only its "
                            f"own annotations, --force included; choose another --out")


def _same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def _install(staging: Path, out: Path, force: bool) -> bool:
    """Rename ``staging`` to ``out``; True if ``out`` already held the same files."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # an empty folder made for them
    if out.exists():
        if out.is_dir() and _same_tree(staging, out):
            return True
        if not force:
            raise AnnotateError(f"{out} already holds different personkit annotations (other "
                                f"models, options or images; see its manifest.json); pass "
                                f"--force to replace them")
        print(f"annotate: replaced the annotations in {out} (their manifest.json said what "
              f"wrote them)", flush=True)
        old = out.with_name(f".old_{out.name}")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(out)
    return False
