"""The calibrated same-person threshold (personkit/metrics/matching.py) on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from personkit.metrics.evaluators import ReidEvaluator
from personkit.metrics.matching import calibrate_match_threshold

G_PIDS, G_CAMS = np.array([1, 1, 2, 3, -1]), np.array([1, 2, 1, 2, 1])
Q_PIDS, Q_CAMS = np.array([1, 2, 3, 4]), np.array([1, 2, 1, 1])
# q0: g0 is its own camera (left out), g4 junk: nearest good 0.10, nearest other 0.40.
# q1: nearest good 0.05, other 0.30. q2: good 0.45 but another person at 0.20 (a wrong match).
# q3: its identity is not in the gallery (no good match): left out.
DIST = np.array([
    [0.00, 0.10, 0.40, 0.50, 0.00],
    [0.30, 0.35, 0.05, 0.60, 0.00],
    [0.20, 0.25, 0.70, 0.45, 0.00],
    [0.01, 0.01, 0.01, 0.01, 0.01],
], dtype=np.float32)


def test_strict_target_accepts_no_stranger():
    # strangers' nearest: 0.20, 0.30, 0.40; 1% of 3 is none -> just below 0.20
    c = calibrate_match_threshold(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, 0.01)
    assert c["num_queries"] == 3
    assert np.float32(0.195) < c["threshold"] < np.float32(0.20)
    assert c["stranger_accept"] == 0.0
    assert c["recall"] == pytest.approx(2 / 3)  # q0, q1 matched; q2 (0.20) rejected
    assert c["precision"] == 1.0


def test_looser_target_accepts_one_stranger_and_one_wrong_match():
    # one stranger of three may pass: the threshold lies just below the second, 0.30
    c = calibrate_match_threshold(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, 0.34)
    assert np.float32(0.29) < c["threshold"] < np.float32(0.30)
    assert c["stranger_accept"] == pytest.approx(1 / 3)
    # accepted: q0, q1 (right), q2 (its nearest, 0.20, is someone else) + stranger q2
    assert c["recall"] == pytest.approx(2 / 3)
    assert c["precision"] == pytest.approx(2 / 4)


def test_tied_stranger_distances_never_exceed_the_target():
    dist = np.full((3, 4), 0.5, dtype=np.float32)
    dist[:, 0] = 0.1  # the good match of every query (pid 1, other camera)
    c = calibrate_match_threshold(dist, np.array([1, 1, 1]), np.array([1, 2, 3, 4]),
                                  np.zeros(3, int), np.ones(4, int), 0.5)
    assert c["threshold"] < 0.5 and c["stranger_accept"] == 0.0 and c["recall"] == 1.0


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="stranger_accept"):
        calibrate_match_threshold(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, 1.0)
    with pytest.raises(ValueError, match="cannot be calibrated"):  # only own-camera matches
        calibrate_match_threshold(DIST[:1, :1], Q_PIDS[:1], G_PIDS[:1], Q_CAMS[:1],
                                  G_CAMS[:1])


def test_evaluator_threshold_separates_identities():
    """Four identities as tight clusters of unit vectors: the threshold lies between the
    within-identity and the between-identity cosine distances, with nothing lost."""
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4]
    emb = np.repeat(centres, 6, axis=0) + 0.05 * rng.normal(size=(24, 8))
    pids, cams = np.repeat(np.arange(1, 5), 6), np.tile([1, 2, 3], 8)
    query = np.tile([True, False, False], 8)
    ev = ReidEvaluator()
    ev.process(emb, pids, cams, query)
    c = ev.match_calibration()
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    d = 1 - unit[query] @ unit[~query].T  # query x gallery
    same = pids[query][:, None] == pids[~query][None]
    assert d[same].max() < c["threshold"] < d[~same].min()
    assert c["recall"] == 1.0 and c["precision"] == 1.0 and c["num_queries"] == 8


def test_a_threshold_for_track_means_is_calibrated_among_track_means():
    """Issue #34: the index compares means of many views; averaging views pulls every mean
    closer to every other (the per-view noise cancels), so the crop-level threshold accepts
    far more strangers there. The track-level threshold is calibrated among the means of each
    identity's views in one camera, by the same rule."""
    from personkit.metrics.matching import (
        calibrate_match_threshold,
        calibrate_track_threshold,
        track_means,
    )

    rng = np.random.default_rng(0)
    ids, cams, views, dim = 120, 2, 6, 64
    common = rng.normal(size=dim)  # what every person shares (embeddings fill a cone)
    centre = rng.normal(size=(ids, dim))  # each identity's own direction
    pids = np.repeat(np.arange(1, ids + 1), cams * views)
    camids = np.tile(np.repeat(np.arange(cams), views), ids)
    emb = (common / np.linalg.norm(common) + 0.5 * centre[pids - 1] / np.sqrt(dim)
           + rng.normal(scale=0.125, size=(len(pids), dim)))  # a view's own noise
    means, m_pids, m_cams = track_means(emb, pids, camids)
    assert means.shape == (ids * cams, dim) and np.allclose(np.linalg.norm(means, axis=1), 1)
    assert sorted(zip(m_pids.tolist(), m_cams.tolist(), strict=True)) == [
        (p, c) for p in range(1, ids + 1) for c in range(cams)]
    tracks = calibrate_track_threshold(emb, pids, camids)
    assert tracks["tracks"] == ids * cams and tracks["views"] == views
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    query = camids == 0
    crops = calibrate_match_threshold(1 - x[query] @ x[~query].T, pids[query], pids[~query],
                                      camids[query], camids[~query])
    dist = 1 - means @ means.T  # the crop threshold among track means: many strangers pass
    other = (m_pids[:, None] != m_pids[None, :])
    nearest_stranger = np.where(other, dist, np.inf).min(1)
    assert (nearest_stranger <= crops["threshold"]).mean() > 0.5
    assert (nearest_stranger <= tracks["threshold"]).mean() <= 0.01  # what it promises
    assert tracks["threshold"] < crops["threshold"] and tracks["recall"] > 0.5
