"""Per-track summaries: what the network says about one person, merged over the track.

The paper motivates ReID as what "enables tracking and merging person information across
longer timespans" (Pfeiffer et al., GCPR 2019, Sec. 1). For every attribute the frames' class
probabilities are averaged, each frame weighted by its detection score; the track's label is
the decision on that mean (the arg-max, or for a binary attribute with a calibrated threshold,
class 1 when its mean probability reaches the threshold: the predictor's rule), ``confidence``
the mean probability of that label, ``positive`` a binary attribute's mean probability of
class 1 (what ``--where "backpack>=0.3"`` filters on), and ``agreement`` the fraction of
frames whose own decision is the track's. (Results without class probabilities vote with
their label, weighted by ``probability × score``.) The track embedding is the mean of the
L2-normalised per-frame embeddings; its norm (1 when every frame agrees) is reported as
``consistency``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from personkit.inference.predictor import PersonResult


def mean_embedding(embeddings: list[np.ndarray]) -> np.ndarray | None:
    """A track's embedding: the mean of its frames' L2-normalised embeddings (``None``
    without any)."""
    return l2_normalise(np.stack(embeddings)).mean(0) if embeddings else None


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


@dataclass
class TrackObservation:
    """One frame of a track: the tracker's box, the detection it came from and its result."""

    frame: int
    box: tuple[float, float, float, float]
    score: float
    detection: int
    result: PersonResult | None = None
    parts_path: str | None = None


@dataclass
class TrackSummary:
    """Everything known about one track."""

    track_id: int
    observations: list[TrackObservation] = field(default_factory=list)
    #: attribute -> its class names, in the model's order (the predictor's ``meta``)
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: binary attribute -> calibrated decision threshold (the predictor's)
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def first_frame(self) -> int:
        return self.observations[0].frame

    @property
    def last_frame(self) -> int:
        return self.observations[-1].frame

    def attributes(self) -> dict[str, dict[str, Any]]:
        """Merged attributes: ``label``, ``confidence``, ``agreement``, ``frames`` each, and
        ``positive`` for binary attributes (module docstring)."""
        seen: dict[str, list[tuple[Any, float]]] = defaultdict(list)
        for ob in self.observations:
            for name, pred in ((ob.result.attributes or {}) if ob.result else {}).items():
                seen[name].append((pred, max(ob.score, 1e-6)))
        return {name: self._merge(name, preds) for name, preds in seen.items()}

    def _merge(self, name: str, preds: list[tuple[Any, float]]) -> dict[str, Any]:
        labels = [p.label for p, _ in preds]
        if name not in self.classes or not all(p.probabilities for p, _ in preds):
            # labels only: a weighted vote
            weights: dict[str, float] = defaultdict(float)
            for p, w in preds:
                weights[p.label] += p.probability * w
            label = max(weights, key=weights.get)
            out = {"label": label, "confidence": round(weights[label] / sum(weights.values()),
                                                       4)}
        else:
            mean = np.average([p.probabilities for p, _ in preds], axis=0,
                              weights=[w for _, w in preds])
            k = (int(mean[1] >= self.thresholds[name]) if len(mean) == 2
                 and name in self.thresholds else int(mean.argmax()))
            out = {"label": self.classes[name][k], "confidence": round(float(mean[k]), 4)}
            if len(mean) == 2:
                out["positive"] = round(float(mean[1]), 4)
        return {**out, "agreement": round(labels.count(out["label"]) / len(labels), 4),
                "frames": len(labels)}

    def embedding(self) -> np.ndarray | None:
        """Mean of the L2-normalised embeddings of the track's frames (``None`` without any)."""
        return mean_embedding([ob.result.embedding for ob in self.observations
                               if ob.result is not None and ob.result.embedding is not None])

    def to_dict(self, keypoints: bool = False) -> dict[str, Any]:
        """JSON-ready summary (the embedding itself goes to ``track_embeddings.npy``)."""
        emb = self.embedding()
        frames = []
        for ob in self.observations:
            row: dict[str, Any] = {"frame": ob.frame, "box": [round(v, 2) for v in ob.box],
                                   "score": round(ob.score, 4), "detection": ob.detection}
            if keypoints and ob.result is not None and ob.result.keypoints is not None:
                row["keypoints"] = [[round(float(v), 2) for v in kp] for kp in ob.result.keypoints]
            if ob.parts_path is not None:
                row["parts"] = ob.parts_path
            frames.append(row)
        return {"track_id": self.track_id, "first_frame": self.first_frame,
                "last_frame": self.last_frame, "length": len(self.observations),
                "attributes": self.attributes(),
                "embedding_consistency": None if emb is None else round(
                    float(np.linalg.norm(emb)), 4),
                "frames": frames}
