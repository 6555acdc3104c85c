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
