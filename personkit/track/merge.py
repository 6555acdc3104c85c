"""Per-track summaries: what the network says about one person, merged over the track.

The paper motivates ReID as what "enables tracking and merging person information across
longer timespans" (Pfeiffer et al., GCPR 2019, Sec. 1). For every attribute each frame votes
for its predicted label with weight ``probability × detection score``; the track's label is the
heaviest, ``confidence`` its share of the total weight, and ``agreement`` the fraction of
frames whose own label is the track's. The track embedding is the mean of the L2-normalised
per-frame embeddings; its norm (1 when every frame agrees) is reported as ``consistency``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from personkit.inference.predictor import PersonResult


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

    @property
    def first_frame(self) -> int:
        return self.observations[0].frame

    @property
    def last_frame(self) -> int:
        return self.observations[-1].frame

    def attributes(self) -> dict[str, dict[str, Any]]:
        """Merged attributes: ``label``, ``confidence``, ``agreement``, ``frames`` each."""
        weights: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        votes: dict[str, list[str]] = defaultdict(list)
        for ob in self.observations:
            for name, pred in ((ob.result.attributes or {}) if ob.result else {}).items():
                weights[name][pred.label] += pred.probability * max(ob.score, 1e-6)
                votes[name].append(pred.label)
        out = {}
        for name, w in weights.items():
            label = max(w, key=w.get)
            out[name] = {"label": label, "confidence": round(w[label] / sum(w.values()), 4),
                         "agreement": round(votes[name].count(label) / len(votes[name]), 4),
                         "frames": len(votes[name])}
        return out

    def embedding(self) -> np.ndarray | None:
        """Mean of the L2-normalised embeddings of the track's frames (``None`` without any)."""
        embs = [ob.result.embedding for ob in self.observations
                if ob.result is not None and ob.result.embedding is not None]
        return l2_normalise(np.stack(embs)).mean(0) if embs else None

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
