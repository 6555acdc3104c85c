"""``personkit train-detector``: a person detector trained on full frames of synthetic MOT
sequences (:mod:`personkit.synth.mot`), evaluated with COCO AP on held-out sequences.

The run directory has the guarantees of ``personkit train``: ``run.json`` (the run's identity),
``config.yaml``, content-hashed checkpoints (``checkpoints/step_*.pt``: weights, optimizer,
step, run id) from which ``--resume auto`` continues exactly (batches and flips are pure
functions of the seed and the step, so nothing else needs restoring), a lock held while it
runs, ``log.jsonl``, TensorBoard events in ``tb/``, ``curves.png``, the final
``model.safetensors`` and ``metrics.json`` (AP, AP50, AP75 on the evaluation sequences).

Targets: the ground-truth pedestrians of each frame, clipped to it; people less visible than
``data.min_visibility`` are ignore regions in the evaluation (COCO crowds) and left out of
the targets. Visibility counts occlusion and the image border, as in MOT16/17: the synthetic
gt's occlusion visibility times the share of the person's box inside the frame.
"""

from __future__ import annotations

import json
import math
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from personkit.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_latest_valid,
    save_checkpoint,
    save_weights,
    write_json,
)
from personkit.config import DetectorConfig, SequenceSetConfig, config_to_dict, save_config
from personkit.data.constants import PERSON_LABEL
from personkit.data.io import read_image
from personkit.data.mot import mot_images, read_mot_rows
from personkit.engine.rundir import check_out_dir, claim_run_dir, write_run_file
from personkit.metrics.detection import coco_person_ap
from personkit.models.detector import DETECTOR_KIND, TorchvisionDetector, build_person_detector
from personkit.runtime import exclusive, resolve_device


@dataclass
class DetectionFrame:
    """One frame: its image and, in its pixels, the target and the ignored persons."""

    path: Path
    boxes: np.ndarray  # N×4 x1, y1, x2, y2
    ignore: np.ndarray  # M×4


def sequence_frames(root: str | Path, sets: SequenceSetConfig, min_visibility: float,
                    progress: bool = False) -> list[DetectionFrame]:
    """The frames of ``sets`` (``ROOT/PRESET-SEED``, rendered by ``synth-mot`` when missing)
    with their ground-truth persons."""
    from personkit.synth.mot import write_mot_sequence

    frames = []
    for seed in sets.seeds:
        seq = Path(root) / f"{sets.preset}-{seed}"
        if not (seq / "gt" / "gt.txt").is_file():
            if progress:
                print(f"train-detector: rendering {seq}", file=sys.stderr)
            write_mot_sequence(seq, sets.preset, seed=seed)
        _, _, images = mot_images(seq)
        rows = read_mot_rows(seq / "gt" / "gt.txt", gt=True)
        visible = rows.table[:, 8] if rows.table.shape[1] > 8 else np.ones(len(rows.table))
        h, w = read_image(images[0]).shape[:2]
        amodal = rows.boxes()
        boxes = amodal.copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        area = (boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)
        # the synthetic gt's visibility counts occlusion within the frame only; as in MOT16/17
        # ("occlusion and image borders"), the part of the person outside the frame counts too
        visible = visible * _box_area(boxes) / np.maximum(_box_area(amodal), 1e-9)
        for t in range(0, len(images), sets.frame_step):
            here = (rows.table[:, 0] == t + 1) & area
            frames.append(DetectionFrame(images[t], boxes[here & (visible >= min_visibility)],
                                         boxes[here & (visible < min_visibility)]))
    return frames


def _box_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)


def batch_indices(seed: int, step: int, batch_size: int, n: int) -> list[int]:
    """The frames of ``step``: consecutive slices of a seeded permutation per epoch (a pure
    function of its arguments, so a resumed run draws what the uninterrupted one drew)."""
    orders: dict[int, np.ndarray] = {}  # a batch spans at most a few epochs
    out = []
    for k in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(k, n)
        if epoch not in orders:
            orders[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        out.append(int(orders[epoch][pos]))
    return out


def load_batch(frames: list[DetectionFrame], indices: list[int], seed: int, step: int,
               flip: bool) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Images in [0, 1] and torchvision targets; each frame mirrored with probability 1/2
    (drawn from ``seed``, ``step`` and its place in the batch)."""
    images, targets = [], []
    for j, i in enumerate(indices):
        image, boxes = read_image(frames[i].path), frames[i].boxes.astype(np.float32)
        if flip and np.random.default_rng([seed, step, j, 7]).random() < 0.5:
            image = image[:, ::-1]
            boxes = np.stack([image.shape[1] - boxes[:, 2], boxes[:, 1],
                              image.shape[1] - boxes[:, 0], boxes[:, 3]], 1)
        images.append(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
                      / 255)
        targets.append({"boxes": torch.from_numpy(boxes.reshape(-1, 4)),
                        "labels": torch.full((len(boxes),), PERSON_LABEL, dtype=torch.int64)})
    return images, targets


def learning_rate(cfg: DetectorConfig, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then a cosine decay to 0 at the last step."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    done = (step - t.warmup_steps) / max(1, t.iterations - t.warmup_steps)
    return t.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))


def evaluate_detector(model: torch.nn.Module, frames: list[DetectionFrame],
                      device: torch.device | str = "cpu", batch_size: int = 8) -> dict[str, Any]:
    """COCO AP, AP50, AP75 of ``model`` (any torchvision-style detector) on ``frames``, every
    box it keeps scored (its own score threshold)."""
    detector = TorchvisionDetector("evaluation", device=str(device), min_score=0.0, model=model)
    detections = []
    for start in range(0, len(frames), batch_size):
        detections += detector.detect([read_image(f.path) for f in
                                       frames[start:start + batch_size]])
    return coco_person_ap([f.boxes for f in frames], [f.ignore for f in frames], detections)


def _check_detector_state(state: dict[str, Any], path: Path) -> None:
    if state.get("kind") != DETECTOR_KIND or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{path} is not a personkit detector checkpoint")


def train_detector(cfg: DetectorConfig, out: str | Path, *, resume: str | None = None,
                   overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train, checkpoint and evaluate a person detector into ``out`` (module docstring);
    returns the evaluation scores and the paths written."""
    out = check_out_dir(out)
    resume = claim_run_dir(out, resume, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out / ".lock", f"run directory {out}"):
        return _train(cfg, out, resume, progress)


def _train(cfg: DetectorConfig, out: Path, resume: str | None, progress: bool
           ) -> dict[str, Any]:
    from torch.utils.tensorboard import SummaryWriter

    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)
    m = cfg.model
    model = build_person_detector(m.backbone, m.fpn_channels, m.min_size, m.max_size,
                                  m.score_threshold).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.train.lr,
                                momentum=cfg.train.momentum,
                                weight_decay=cfg.train.weight_decay)
    start, run_id = 0, None
    found = (load_latest_valid(out / "checkpoints", _check_detector_state) if resume == "auto"
             else (Path(resume), load_checkpoint(resume)) if resume else None)
    if found is not None:
        path, state = found
        _check_detector_state(state, path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, run_id = state["step"], state["run_id"]
        print(f"train-detector: resuming {path} at step {start}", file=sys.stderr)
    run_id = run_id or uuid.uuid4().hex  # a resumed run keeps its checkpoint's
    write_run_file(out, run_id, command="train-detector", start_step=start)
    save_config(cfg, out / "config.yaml")
    frames = sequence_frames(cfg.data.root, cfg.data.train, cfg.data.min_visibility, progress)
    writer = SummaryWriter(str(out / "tb"))
    log = open(out / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed below
    t0 = time.perf_counter()
    try:
        for step in range(start, cfg.train.iterations):
            losses = _step(model, optimizer, cfg, frames, step, device)
            if (step + 1) % cfg.train.log_every == 0 or step + 1 == cfg.train.iterations:
                record = {"step": step + 1, "lr": learning_rate(cfg, step),
                          **{f"loss_{k}": v for k, v in losses.items()},
                          "seconds": round(time.perf_counter() - t0, 2)}
                log.write(json.dumps(record) + "\n")
                log.flush()
                for k, v in record.items():
                    writer.add_scalar(f"train/{k}", v, step + 1)
                if progress:
                    _say_step(step + 1 - start, step + 1, cfg.train.iterations, losses,
                              record["seconds"])
            every = cfg.train.checkpoint_every
            if (every and (step + 1) % every == 0) or step + 1 == cfg.train.iterations:
                save_checkpoint({"kind": DETECTOR_KIND, "model": model.state_dict(),
                                 "optimizer": optimizer.state_dict(), "step": step + 1,
                                 "run_id": run_id, "config": config_to_dict(cfg)},
                                out / "checkpoints", step + 1, cfg.train.keep_checkpoints,
                                run_id)
    finally:
        log.close()
        writer.close()
    return _finish(model, cfg, out, device, progress)


def _say_step(done: int, step: int, total: int, losses: dict[str, float],
              seconds: float) -> None:
    """One progress line: step, loss, time so far and left (``done`` steps this session)."""
    left = seconds / max(done, 1) * (total - step)
    print(f"train-detector: step {step}/{total}, loss {sum(losses.values()):.3f}, "
          f"{seconds:.0f} s, about {left:.0f} s left", file=sys.stderr, flush=True)


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: DetectorConfig,
          frames: list[DetectionFrame], step: int, device: torch.device) -> dict[str, float]:
    model.train()
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(cfg, step)
    indices = batch_indices(cfg.train.seed, step, cfg.train.batch_size, len(frames))
    images, targets = load_batch(frames, indices, cfg.train.seed, step, cfg.data.flip)
    losses = model([i.to(device) for i in images],
                   [{k: v.to(device) for k, v in t.items()} for t in targets])
    total = sum(losses.values())
    if not torch.isfinite(total):
        raise FloatingPointError(f"train-detector: the loss is not finite at step {step + 1} "
                                 f"({ {k: float(v) for k, v in losses.items()} }); lower "
                                 f"train.lr")
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if cfg.train.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
    optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}


def _finish(model: torch.nn.Module, cfg: DetectorConfig, out: Path,
            device: torch.device, progress: bool = False) -> dict[str, Any]:
    from personkit.report import plot_learning_curves

    weights = save_weights(model, out / "model.safetensors", config_to_dict(cfg),
                           {"kind": DETECTOR_KIND, "person_label": PERSON_LABEL})
    frames = sequence_frames(cfg.data.root, cfg.data.eval, cfg.data.min_visibility)
    if progress:
        print(f"train-detector: evaluating AP on {len(frames)} frames", file=sys.stderr,
              flush=True)
    t = time.perf_counter()
    scores = evaluate_detector(model, frames, device)
    scores["seconds_per_frame"] = (time.perf_counter() - t) / max(1, len(frames))
    scores["eval_sequences"] = [f"{cfg.data.eval.preset}-{s}" for s in cfg.data.eval.seeds]
    write_json(out / "metrics.json", scores)
    if (out / "log.jsonl").stat().st_size:
        plot_learning_curves(out / "log.jsonl", out / "curves.png")
    return {**scores, "model": str(weights)}
