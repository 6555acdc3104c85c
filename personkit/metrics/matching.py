"""A calibrated "same person" threshold: when is a nearest gallery entry the same person?

Gallery matching (``personkit track --gallery``) accepts a new track's nearest bank entry when
their cosine distance is at most a threshold. The right threshold depends on the embedding
space (a model's different people may lie 0.02 apart), so it is measured on data with
identities, the ReID evaluation's query and gallery (Market-1501 rules: same-camera matches of
the query's own identity and junk are left out):

* **known person**: a query against the full gallery; accepted when its nearest entry is within
  the threshold, *correct* when that entry is the query's identity;
* **stranger**: the same query against the gallery without its identity (an open-set
  protocol, as in face verification's "TAR at FAR"); every acceptance is a false match.

The threshold is the largest distance at which at most ``stranger_accept`` of the strangers
are accepted (default 1%). At it, ``recall`` is the fraction of known queries matched
correctly and ``precision`` the fraction of acceptances that are correct when known people and
strangers come in equal numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The default share of strangers a calibrated threshold may accept.
STRANGER_ACCEPT = 0.01


def calibrate_match_threshold(dist: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray,
                              q_cams: np.ndarray, g_cams: np.ndarray,
                              stranger_accept: float = STRANGER_ACCEPT) -> dict[str, Any]:
    """The threshold on the ``Q×G`` cosine distances ``dist`` that accepts at most
    ``stranger_accept`` of the strangers, with its precision and recall (module docstring).

    Queries without a valid same-identity entry in another camera, or without any entry of
    another identity, are left out (``num_queries`` counts those used).

    Raises:
        ValueError: ``stranger_accept`` is not in (0, 1), or no query can be used.
    """
    if not 0.0 < stranger_accept < 1.0:
        raise ValueError(f"stranger_accept must be in (0, 1), got {stranger_accept}")
    dist = np.asarray(dist)
    same = q_pids[:, None] == g_pids[None, :]
    valid = ~(same & (q_cams[:, None] == g_cams[None, :])) & (g_pids[None, :] != -1)
    good, other = same & valid, ~same & valid
    use = good.any(1) & other.any(1)
    if not use.any():
        raise ValueError("no query has both a match in another camera and another identity "
                         "in the gallery: the threshold cannot be calibrated")
    dist, good, other = dist[use], good[use], other[use]
    nearest_good = np.where(good, dist, np.inf).min(1)
    nearest_other = np.where(other, dist, np.inf).min(1)  # the query as a stranger
    threshold = _largest_threshold(nearest_other, stranger_accept)
    known = np.minimum(nearest_good, nearest_other)
    correct = (nearest_good <= nearest_other) & (known <= threshold)
    accepted = int((known <= threshold).sum()) + int((nearest_other <= threshold).sum())
    return {
        "threshold": float(threshold), "metric": "cosine",
        "stranger_accept_target": stranger_accept,
        "stranger_accept": float((nearest_other <= threshold).mean()),
        "precision": float(correct.sum() / accepted) if accepted else 1.0,
        "recall": float(correct.mean()), "num_queries": int(use.sum()),
    }


def _largest_threshold(stranger: np.ndarray, rate: float) -> float:
    """The largest float32 ``t`` with ``mean(stranger <= t) <= rate``."""
    s = np.sort(stranger.astype(np.float32))
    k = int(np.floor(rate * len(s) + 1e-9))  # strangers that may be accepted
    if k >= len(s):
        return float(s[-1])
    return float(np.nextafter(s[k], np.float32(-np.inf)))


def track_means(embeddings: np.ndarray, pids: np.ndarray,
                cams: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One L2-normalised mean of the L2-normalised embeddings per ``(pid, camera)`` (pids
    > 0): what an index entry is, the mean over a track, approximated by an identity's views
    in one camera (Market-1501's views of a person in a camera are mostly one passage)."""
    x = np.asarray(embeddings, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    keep = np.asarray(pids) > 0
    keys = np.stack([np.asarray(pids)[keep], np.asarray(cams)[keep]], 1)
    groups, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((len(groups), x.shape[1]))
    np.add.at(sums, inverse, x[keep])
    means = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return means.astype(np.float32), groups[:, 0], groups[:, 1]


def calibrate_track_threshold(embeddings: np.ndarray, pids: np.ndarray, cams: np.ndarray,
                              stranger_accept: float = STRANGER_ACCEPT) -> dict[str, Any]:
    """:func:`calibrate_match_threshold` in the space of track means (:func:`track_means`):
    every mean queries the others, its own identity in another camera being the match. This
    is the threshold an index of tracks needs: averaging views pulls every mean closer to
    every other, so a threshold calibrated on single crops accepts far more strangers there
    (docs/search.md, *Same person on index entries*). ``views`` is the mean number of views
    per track mean."""
    means, g_pids, g_cams = track_means(embeddings, pids, cams)
    dist = 1.0 - means @ means.T
    out = calibrate_match_threshold(dist, g_pids, g_pids, g_cams, g_cams, stranger_accept)
    return {**out, "space": "track means", "tracks": len(means),
            "views": round(float(np.sum(np.asarray(pids) > 0) / max(1, len(means))), 2)}
