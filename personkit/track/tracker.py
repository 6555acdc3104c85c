"""Tracking by detection with BoxMOT, fed personkit's embeddings (Pfeiffer et al., GCPR 2019).

Per frame, the :class:`~personkit.inference.Predictor` runs once, batched, over all detections
(embedding, attributes, keypoints, parts); the L2-normalised embeddings go to a BoxMOT tracker
through ``Detections(embeddings=...)`` (BoxMOT does not normalise them itself, and a tracker
given no embeddings would download its own ReID weights, which this module never lets happen).
The tracker's ``detection_indices`` join every track row back to its detection's results.

Embedding modes: ``personkit`` (the network's), ``none`` (motion only: the tracker's
``use_embeddings=False``) and ``random`` (a control: one random unit vector per detection).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from personkit.extras import require
from personkit.inference.predictor import PersonResult, Predictor
from personkit.inference.preprocess import clip_boxes, to_rgb_uint8
from personkit.track.merge import TrackObservation, TrackSummary, l2_normalise

#: BoxMOT trackers: appearance-capable ones take embeddings, ByteTrack/OcSort never do.
TRACKERS = ("deepocsort", "botsort", "bytetrack", "ocsort")
APPEARANCE_TRACKERS = ("deepocsort", "botsort")
EMBEDDINGS = ("personkit", "none", "random")

#: Appearance-only BoxMOT arguments that personkit sets when a tracker is given embeddings
#: (``personkit`` or ``random`` alike; motion-only runs are untouched). Chosen by
#: ``benchmarks/bench_tracking.py`` on synthetic sequence seed 2, not the reported seeds; see
#: docs/tracking.md ("Tracker parameters").
#: BotSort: ``proximity_thresh`` 1.0 lifts the IoU gate on appearance matches (BoxMOT: 0.5),
#: so a lost track can be found again by appearance away from its predicted box (measured:
#: with ground-truth identities as embeddings, the 0.5 gate left IDF1 unchanged and 1.0 added
#: 9 points); its ``appearance_thresh`` follows :class:`AppearanceGate`. DeepOcSort keeps
#: BoxMOT's values (no setting of its appearance weight helped even with ground-truth
#: identities: it uses appearance only to break ties between boxes overlapping by IoU > 0.3).
APPEARANCE_DEFAULTS: dict[str, dict[str, Any]] = {
    "deepocsort": {},
    "botsort": {"proximity_thresh": 1.0},
}


#: Quantile of same-frame (different-person) cosine distances used as BotSort's appearance
#: threshold (:class:`AppearanceGate`); chosen on synthetic seed 2 (docs/tracking.md).
APPEARANCE_QUANTILE = 0.01


def parse_tracker_arg(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> ``(key, value)``: an int, a float, true/false, or the string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ValueError(f"tracker argument must be KEY=VALUE, got {text!r}")
    value = value.strip()
    if value.lower() in ("true", "false"):
        return key.strip(), value.lower() == "true"
    for kind in (int, float):
        try:
            return key.strip(), kind(value)
        except ValueError:
            pass
    return key.strip(), value


@dataclass
class FrameTracks:
    """The tracks alive in one frame: ids, boxes (xyxy), scores, detection row, results."""

    frame: int
    track_ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    detections: np.ndarray
    results: list[PersonResult | None] = field(default_factory=list)


def make_boxmot_tracker(name: str, use_embeddings: bool, frame_rate: float = 30,
                        **kwargs: Any) -> Any:
    """A BoxMOT tracker on the Python backend, without camera-motion compensation (static
    cameras) and never with a ReID model of its own; with embeddings, personkit's
    :data:`APPEARANCE_DEFAULTS` under ``kwargs``. An unknown argument is a ValueError naming
    it.

    ``frame_rate`` is passed as it is, fractional rates included: BoxMOT 25's Python BotSort
    and ByteTrack (annotated ``int``) only compute ``int(frame_rate / 30.0 * track_buffer)``
    from it (the lost-track buffer in frames), which a float serves exactly, so nothing is
    rounded here (only its native backends, which personkit never uses, need an int);
    DeepOcSort and OcSort take no frame rate."""
    boxmot = require("boxmot")
    if use_embeddings:
        kwargs = {**APPEARANCE_DEFAULTS.get(name, {}), **kwargs}
    if name not in TRACKERS:
        raise ValueError(f"unknown tracker {name!r}; valid: {TRACKERS}")
    if use_embeddings and name not in APPEARANCE_TRACKERS:
        raise ValueError(f"tracker {name!r} uses motion only; embeddings need one of "
                         f"{APPEARANCE_TRACKERS}")
    build = {"deepocsort": lambda: boxmot.DeepOcSort(use_embeddings=use_embeddings,
                                                     cmc_off=True, **kwargs),
             "botsort": lambda: boxmot.BotSort(use_embeddings=use_embeddings, use_cmc=False,
                                               frame_rate=frame_rate, **kwargs),
             "bytetrack": lambda: boxmot.ByteTrack(frame_rate=frame_rate, **kwargs),
             "ocsort": lambda: boxmot.OcSort(**kwargs)}[name]
    try:
        return build()
    except TypeError as e:
        raise ValueError(f"bad argument for BoxMOT's {name} tracker ({e}); given "
                         f"{sorted(kwargs)}") from None


class AppearanceGate:
    """BotSort's appearance threshold on the scale of the embeddings at hand.

    BoxMOT's default (``appearance_thresh`` 0.25 cosine distance) is set for its OSNet
    features; personkit's embeddings (globally pooled, non-negative) put every pair of people
    much closer (measured on the synthetic sequences: same person ~0.007, different people
    ~0.024 with a 400-step model), so a fixed 0.25 calls everybody the same person. Two
    detections of one frame are two different people, so their cosine distances sample the
    "different people" distribution without labels: the threshold is its ``quantile`` over
    the last ``keep`` such pairs seen so far (no pairs yet: 0, appearance off).
    """

    def __init__(self, quantile: float, keep: int = 5000):
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"appearance quantile must be in (0, 1), got {quantile}")
        self.quantile = quantile
        self._dist: deque[float] = deque(maxlen=keep)

    def update(self, embeddings: np.ndarray) -> float:
        """Add the pairs among one frame's L2-normalised embeddings; the current threshold."""
        n = len(embeddings)
        if n > 1:
            d = 1.0 - embeddings @ embeddings.T
            self._dist.extend(d[np.triu_indices(n, 1)].tolist())
        return float(np.quantile(np.fromiter(self._dist, float), self.quantile)) \
            if self._dist else 0.0


class Tracker:
    """Follows people through frames: ``update(image, boxes, scores)`` once per frame.

    Args:
        predictor: the personkit network (``None``: no per-person outputs, motion only).
        tracker: one of :data:`TRACKERS`.
        embeddings: ``personkit``, ``none`` or ``random`` (see the module docstring).
        frame_rate: frames per second of the source, fractional rates kept (BotSort and
            ByteTrack scale their lost-track buffers by it: :func:`make_boxmot_tracker`).
        seed: seed of the ``random`` embeddings.
        tracker_kwargs: extra arguments of the BoxMOT tracker (e.g. ``max_age``,
            ``appearance_thresh``); they override :data:`APPEARANCE_DEFAULTS`.
        appearance_quantile: BotSort with embeddings: its ``appearance_thresh`` follows an
            :class:`AppearanceGate` with this quantile (``None``, or an ``appearance_thresh``
            in ``tracker_kwargs``: a fixed threshold instead).

    Raises:
        ValueError: an unknown tracker or mode, or ``personkit`` embeddings from a predictor
            without the ReID head.
    """

    def __init__(self, predictor: Predictor | None, tracker: str = "botsort",
                 embeddings: str = "personkit", *, frame_rate: float = 30, seed: int = 0,
                 tracker_kwargs: Mapping[str, Any] | None = None,
                 appearance_quantile: float | None = APPEARANCE_QUANTILE):
        if embeddings not in EMBEDDINGS:
            raise ValueError(f"embeddings must be one of {EMBEDDINGS}, got {embeddings!r}")
        if embeddings == "personkit":
            if predictor is None or "reid" not in predictor.heads:
                heads = None if predictor is None else predictor.heads
                raise ValueError(f"personkit embeddings need a model with the ReID head "
                                 f"(this one runs {heads}); use embeddings 'none'")
        if tracker not in TRACKERS:
            raise ValueError(f"unknown tracker {tracker!r}; valid: {TRACKERS}")
        self.predictor, self.mode, self.name = predictor, embeddings, tracker
        kwargs = dict(tracker_kwargs or {})
        self._tracker = make_boxmot_tracker(tracker, embeddings != "none", frame_rate, **kwargs)
        self._gate = None
        if (tracker == "botsort" and embeddings != "none" and appearance_quantile is not None
                and "appearance_thresh" not in kwargs):
            self._gate = AppearanceGate(appearance_quantile)
            self._tracker.appearance_thresh = 0.0  # closed until the gate has seen pairs
        self._rng = np.random.default_rng(seed)
        has_reid = predictor is not None and "reid" in predictor.heads
        self._dim = int(predictor.meta.embedding_dim) if has_reid else 128  # type: ignore[union-attr]
        self.tracks: dict[int, TrackSummary] = {}
        self.frames = 0
        self.seconds = {"network": 0.0, "tracker": 0.0}

    def _embeddings(self, results: list[PersonResult], n: int) -> np.ndarray | None:
        if self.mode == "none":
            return None
        if self.mode == "personkit":
            emb = l2_normalise(np.stack([r.embedding for r in results]).reshape(n, -1))
            self._dim = emb.shape[1]  # empty frames must keep the width BoxMOT has seen
            return emb
        return l2_normalise(self._rng.standard_normal((n, self._dim)).astype(np.float32))

    def update(self, image: Any, boxes: Any, scores: Any = None,
               frame: int | None = None) -> FrameTracks:
        """Track one frame: ``boxes`` ``N×4`` xyxy pixels, ``scores`` in [0, 1] (default 1).

        ``frame`` is the 1-based frame number (default: one more than the last).
        """
        import torch

        image = to_rgb_uint8(image)
        boxes = clip_boxes(boxes, image.shape[1], image.shape[0]).astype(np.float32)
        n = len(boxes)
        scores = np.ones(n, np.float32) if scores is None else np.clip(
            np.asarray(scores, np.float32).reshape(n), 0.0, 1.0)
        frame = self.frames + 1 if frame is None else int(frame)
        t0 = time.perf_counter()
        results = self.predictor.predict(image, boxes) if self.predictor and n else []
        t1 = time.perf_counter()
        emb = self._embeddings(results, n) if n else (
            None if self.mode == "none" else np.zeros((0, self._dim), np.float32))
        structures = require("boxmot.structures")
        dets = structures.Detections(
            geometry=structures.Boxes(torch.from_numpy(boxes.reshape(-1, 4))),
            scores=torch.from_numpy(scores), class_ids=torch.zeros(n, dtype=torch.int64),
            sample_id=str(frame), embeddings=None if emb is None else torch.from_numpy(emb))
        if self._gate is not None and emb is not None:
            self._tracker.appearance_thresh = self._gate.update(
                emb[scores >= self._tracker.track_high_thresh])
        out = self._tracker.update(dets, np.ascontiguousarray(image[:, :, ::-1]))
        self.seconds["network"] += t1 - t0
        self.seconds["tracker"] += time.perf_counter() - t1
        self.frames += 1
        return self._collect(frame, out, boxes, results)

    def _collect(self, frame: int, out: Any, boxes: np.ndarray,
                 results: list[PersonResult]) -> FrameTracks:
        ids = out.track_ids.cpu().numpy().astype(np.int64) + 1  # MOT ids start at 1
        det = out.detection_indices.cpu().numpy().astype(np.int64)
        tboxes = out.geometry.values.cpu().numpy().astype(np.float64)
        tscores = out.scores.cpu().numpy().astype(np.float64)
        rows = [results[d] if 0 <= d < len(results) else None for d in det]
        for tid, box, score, d, r in zip(ids, tboxes, tscores, det, rows, strict=True):
            if int(tid) not in self.tracks:
                self.tracks[int(tid)] = self._summary(int(tid))
            self.tracks[int(tid)].observations.append(TrackObservation(
                frame, tuple(float(v) for v in box), float(score), int(d), r))
        return FrameTracks(frame, ids, tboxes, tscores, det, rows)

    def _summary(self, tid: int) -> TrackSummary:
        """A new track's summary, knowing the predictor's attribute classes and thresholds."""
        if self.predictor is None:
            return TrackSummary(tid)
        classes = getattr(self.predictor.meta, "attributes", None) or {}
        return TrackSummary(tid, classes={k: tuple(v) for k, v in classes.items()},
                            thresholds=dict(getattr(self.predictor,
                                                    "track_attribute_thresholds", None) or {}))

    def summaries(self) -> list[TrackSummary]:
        """Every track seen so far, by id."""
        return [self.tracks[k] for k in sorted(self.tracks)]
