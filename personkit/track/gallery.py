"""Re-identification across sequences: new tracks matched against a bank of earlier tracks.

A bank is what ``personkit track`` writes: ``gallery.json`` (``{"dim", "model", "entries":
[{"name", "sequence", "track_id", "embedding"}]}``). ``model`` is the identity of the embedding
space (:func:`~personkit.inference.contract.model_identity`: the model's metadata, its weights'
content hash and flip averaging); a bank is matched only by a model of the same identity, since
distances between two embedding spaces mean nothing. Distances are cosine distances
``1 - cos`` between L2-normalised track embeddings (the mean of each track's normalised frame
embeddings); a new track matches its nearest bank entry when the distance is at most
``threshold``. By default that is the model's calibrated same-person threshold
(:mod:`personkit.metrics.matching`, written by ``personkit eval``), which accepts about 1% of
strangers on the evaluation data; a threshold the user gives wins.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from personkit.track.merge import l2_normalise


def load_bank(path: str | Path, model_id: str | None) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Entries (metadata) and the ``K×D`` normalised embeddings of a bank file written by a
    model of identity ``model_id``.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: not a bank, or a bank of another model (naming the file and both models).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gallery bank not found: {path}")
    if path.suffix == ".npy":
        raise ValueError(f"{path}: a .npy holds embeddings but not the model they come from; "
                         f"give the gallery.json written next to it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["entries"]
        emb = np.array([e["embedding"] for e in entries], dtype=np.float32)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a gallery bank ({{'entries': [{{'name', "
                         f"'embedding'}}]}}): {e}") from None
    if emb.ndim != 2 or not len(emb):
        raise ValueError(f"{path}: the bank holds no embeddings")
    if model_id is None or data.get("model") != model_id:
        raise ValueError(f"{path} was written by model {data.get('model') or 'unknown'}, these "
                         f"tracks come from model {model_id or 'unknown'}: their embedding spaces "
                         f"differ (other weights, metadata or flip averaging), so distances "
                         f"between them mean nothing; rebuild the bank with this model")
    meta = [{k: v for k, v in e.items() if k != "embedding"} for e in entries]
    return meta, l2_normalise(emb)


def bank_entries(sequence: str, tracks: list[tuple[int, np.ndarray]],
                 model_id: str | None) -> dict[str, Any]:
    """A bank of this run's tracks (``(track id, embedding)``) for later runs to match."""
    dim = int(tracks[0][1].shape[0]) if tracks else 0
    return {"dim": dim, "model": model_id, "entries": [
        {"name": f"{sequence}:{tid}", "sequence": sequence, "track_id": int(tid),
         "embedding": [round(float(v), 6) for v in l2_normalise(e)]} for tid, e in tracks]}


def gallery_threshold(calibration: dict[str, Any] | None, given: float | None,
                    model: str) -> dict[str, Any]:
    """The threshold gallery matching uses: ``given`` if not None, else the ``calibration``
    of the model (named ``model`` in the error when it has none), with where it comes from:
    the one calibrated between track means (``calibration["tracks"]``: a bank and this run's
    tracks are track means) where the model's evaluation measured it, else the crop one.

    Raises:
        ValueError: neither is known, or ``given`` is not in [0, 2].
    """
    if given is not None:
        if not 0.0 <= given <= 2.0:
            raise ValueError(f"--match-threshold is a cosine distance in [0, 2], got {given}")
        return {"threshold": float(given), "source": "--match-threshold"}
    if calibration is None:
        raise ValueError(f"{model} has no calibrated same-person threshold for these weights "
                         f"and flip setting: run `personkit eval --model {model}` once (it "
                         f"measures one on the ReID evaluation set and stores it in the run's "
                         f"calibration.json), or give --match-threshold")
    chosen = calibration.get("tracks") or calibration  # a bank holds track means
    return {"threshold": float(chosen["threshold"]), "source": "calibrated",
            "space": chosen.get("space", "crops"),
            **{k: chosen.get(k, calibration.get(k)) for k in (
                "dataset", "precision", "recall", "stranger_accept") if k in chosen or
               k in calibration}}


def describe_threshold(used: dict[str, Any]) -> str:
    """One line: the threshold and, when calibrated, on what and how good it is."""
    if used["source"] != "calibrated":
        return f"gallery threshold {used['threshold']:.4f} (--match-threshold)"
    return (f"gallery threshold {used['threshold']:.4f}, calibrated on "
            f"{used.get('dataset', '?')} ({used.get('space', 'crops')}): precision "
            f"{used.get('precision', float('nan')):.3f}, "
            f"recall {used.get('recall', float('nan')):.3f}, strangers accepted "
            f"{100 * used.get('stranger_accept', float('nan')):.1f}%")


def match_gallery(tracks: list[tuple[int, np.ndarray]],
                  bank: tuple[list[dict[str, Any]], np.ndarray], threshold: float,
                  top_k: int = 3) -> list[dict[str, Any]]:
    """For each new track: its nearest entries of ``bank`` (:func:`load_bank`) and whether the
    nearest is a match."""
    meta, emb = bank
    out = []
    for tid, e in tracks:
        dist = 1.0 - emb @ l2_normalise(e)
        order = np.argsort(dist)[:top_k]
        nearest = [{**meta[i], "distance": round(float(dist[i]), 4)} for i in order]
        out.append({"track_id": int(tid), "match": nearest[0] if nearest and
                    nearest[0]["distance"] <= threshold else None, "nearest": nearest})
    return out


def describe_match(m: dict[str, Any]) -> str:
    """One line per new track: its match and distance, or the nearest entry it missed."""
    hit = m["match"]
    if hit:
        return f"track {m['track_id']}: matches {hit['name']} (distance {hit['distance']:.3f})"
    nearest = (f" (nearest {m['nearest'][0]['distance']:.3f})" if m["nearest"] else "")
    return f"track {m['track_id']}: no match{nearest}"
