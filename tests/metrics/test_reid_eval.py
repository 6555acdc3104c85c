"""Market-1501 CMC / mAP / mINP: hand-computed protocol cases and a reference comparison."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from personkit.metrics import compute_distance_matrix, evaluate_reid

# Test vector R1 (protocols.md section 1).
R1_G_PIDS = np.array([1, 1, 2, -1, 1, 0, 2, 3])
R1_G_CAMS = np.array([1, 2, 1, 3, 3, 2, 3, 2])
R1_Q_PIDS = np.array([1, 2, 3])
R1_Q_CAMS = np.array([1, 2, 1])
R1_DIST = np.array([
    [.10, .50, .20, .05, .70, .30, .80, .90],
    [.60, .70, .40, .10, .90, .20, .30, .50],
    [.30, .40, .60, .70, .80, .50, .90, .45],
])


def reference_eval(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    """Straightforward torchreid-style loop with a stable full sort of every row."""
    aps, aps_off, inps, hits = [], [], [], []
    for q in range(len(q_pids)):
        order = np.argsort(distmat[q], kind="stable")
        junk = ((g_pids[order] == q_pids[q]) & (g_cams[order] == q_cams[q])) \
            | (g_pids[order] == -1)
        match = (g_pids[order] == q_pids[q])[~junk]
        if not match.any():
            continue
        r = np.flatnonzero(match)
        i = np.arange(len(r))
        prec = (i + 1) / (r + 1)
        prev = np.where(r > 0, i / np.maximum(r, 1), 1.0)
        aps.append(prec.mean())
        aps_off.append(((prec + prev) / 2).mean())
        inps.append(len(r) / (r[-1] + 1))
        hits.append(np.cumsum(match)[:max_rank] > 0)
    hits = [np.pad(h, (0, max_rank - len(h)), constant_values=True) for h in hits]
    return np.mean(aps), np.mean(aps_off), np.mean(inps), np.mean(hits, axis=0), len(aps)


def test_r1_both_ap_conventions_and_cmc():
    out = evaluate_reid(R1_DIST, R1_Q_PIDS, R1_G_PIDS, R1_Q_CAMS, R1_G_CAMS, max_rank=5)
    assert out["mAP"] == pytest.approx((5 / 12 + 7 / 12 + 1 / 3) / 3)
    assert out["mAP"] == pytest.approx(0.444444, abs=1e-6)
    assert out["mAP_official"] == pytest.approx((7 / 24 + 5 / 12 + 1 / 6) / 3)
    assert out["mAP_official"] == pytest.approx(0.291667, abs=1e-6)
    np.testing.assert_allclose(out["cmc"], [0, 1 / 3, 1, 1, 1])
    # mINP: q0 2 goods, last at rank 4; q1 2 goods, last at rank 3; q2 1 good at rank 3.
    assert out["mINP"] == pytest.approx((2 / 4 + 2 / 3 + 1 / 3) / 3)
    assert out["num_valid_queries"] == 3 and out["num_excluded_queries"] == 0


def test_r1_per_query_ap_values():
    expected = [(0.416667, 0.291667), (0.583333, 0.416667), (0.333333, 0.166667)]
    for q, (ap, ap_off) in enumerate(expected):
        out = evaluate_reid(R1_DIST[q:q + 1], R1_Q_PIDS[q:q + 1], R1_G_PIDS,
                            R1_Q_CAMS[q:q + 1], R1_G_CAMS)
        assert out["mAP"] == pytest.approx(ap, abs=1e-6)
        assert out["mAP_official"] == pytest.approx(ap_off, abs=1e-6)


def test_r1_tie_is_broken_by_gallery_index():
    dist = R1_DIST.copy()
    dist[2, 7] = 0.50  # ties g7 with the distractor g5, which has the smaller index
    out = evaluate_reid(dist[2:], R1_Q_PIDS[2:], R1_G_PIDS, R1_Q_CAMS[2:], R1_G_CAMS)
    assert out["mAP"] == pytest.approx(0.25)  # g7 at 0-based rank 3, after g5
    assert out["mAP_official"] == pytest.approx(0.125)  # the official stable-sort value


def test_junk_is_removed_but_distractors_stay_negative():
    g_pids, g_cams = np.array([-1, 0, 5]), np.array([1, 1, 1])
    dist = np.array([[0.1, 0.2, 0.3]])
    out = evaluate_reid(dist, [5], g_pids, [2], g_cams, max_rank=3)
    assert out["mAP"] == pytest.approx(0.5)  # the pid -1 item is gone, pid 0 still beats g2
    np.testing.assert_allclose(out["cmc"], [0, 1, 1])


def test_same_camera_match_is_junk_not_good():
    g_pids, g_cams = np.array([5, 7, 5]), np.array([2, 1, 1])
    dist = np.array([[0.1, 0.2, 0.3]])  # g0: same pid, same camera -> removed
    out = evaluate_reid(dist, [5], g_pids, [2], g_cams, max_rank=2)
    assert out["mAP"] == pytest.approx(0.5)
    np.testing.assert_allclose(out["cmc"], [0, 1])


@pytest.mark.parametrize("k", [1, 2, 5])
def test_single_good_at_rank_k_trapezoid_is_half(k):
    dist = np.arange(1, 7, dtype=float)[None]
    g_pids = np.full(6, 9)
    g_pids[k - 1] = 3
    out = evaluate_reid(dist, [3], g_pids, [1], np.full(6, 2))
    assert out["mAP"] == pytest.approx(1 / k)
    assert out["mAP_official"] == pytest.approx(1 / (2 * k) if k > 1 else 1.0)


def test_query_without_valid_match_is_excluded_and_counted():
    dist = np.vstack([R1_DIST, [.1, .2, .3, .4, .5, .6, .7, .8]])
    q_pids, q_cams = np.append(R1_Q_PIDS, 4), np.append(R1_Q_CAMS, 1)  # pid 4 not in gallery
    out = evaluate_reid(dist, q_pids, R1_G_PIDS, q_cams, R1_G_CAMS, max_rank=5)
    assert out["num_valid_queries"] == 3 and out["num_excluded_queries"] == 1
    assert out["mAP"] == pytest.approx(0.444444, abs=1e-6)
    np.testing.assert_allclose(out["cmc"], [0, 1 / 3, 1, 1, 1])


def test_no_valid_query_raises():
    with pytest.raises(ValueError, match="no query"):
        evaluate_reid([[0.1, 0.2]], [1], [2, 3], [1], [1, 1])


def test_nan_distance_raises():
    with pytest.raises(ValueError, match="NaN"):
        evaluate_reid([[np.nan, 0.2]], [1], [1, 3], [1], [2, 1])


def random_market(rng, nq=60, ng=400, nid=20, dtype=np.float32):
    g_pids = rng.integers(-1, nid + 1, ng)  # -1 junk, 0 distractors, 1..nid identities
    g_cams = rng.integers(1, 4, ng)
    q_pids = rng.integers(1, nid + 3, nq)  # some ids are missing from the gallery
    q_cams = rng.integers(1, 4, nq)
    dist = rng.random((nq, ng)).astype(dtype)
    dist -= 0.3 * (q_pids[:, None] == g_pids[None, :])
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_loop_on_random_data(seed):
    dist, q_pids, g_pids, q_cams, g_cams = random_market(np.random.default_rng(seed))
    out = evaluate_reid(dist, q_pids, g_pids, q_cams, g_cams, max_rank=20, chunk=7)
    m_ap, m_ap_off, m_inp, cmc, n_valid = reference_eval(dist, q_pids, g_pids, q_cams, g_cams, 20)
    assert out["num_valid_queries"] == n_valid
    assert out["num_excluded_queries"] == len(q_pids) - n_valid > 0
    assert out["mAP"] == pytest.approx(m_ap, rel=1e-12)
    assert out["mAP_official"] == pytest.approx(m_ap_off, rel=1e-12)
    assert out["mINP"] == pytest.approx(m_inp, rel=1e-12)
    np.testing.assert_allclose(out["cmc"], cmc)


def test_matches_reference_with_many_ties():
    rng = np.random.default_rng(3)
    dist, q_pids, g_pids, q_cams, g_cams = random_market(rng, dtype=np.float64)
    dist = np.round(dist * 8) / 8  # heavy ties, including between goods, junk and negatives
    out = evaluate_reid(dist, q_pids, g_pids, q_cams, g_cams, max_rank=20, chunk=16)
    m_ap, m_ap_off, m_inp, cmc, _ = reference_eval(dist, q_pids, g_pids, q_cams, g_cams, 20)
    assert (out["mAP"], out["mAP_official"], out["mINP"]) == pytest.approx((m_ap, m_ap_off, m_inp))
    np.testing.assert_allclose(out["cmc"], cmc)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_distance_matrix_matches_direct_formula(metric):
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(7, 5)), rng.normal(size=(11, 5))
    diff = q[:, None] - g[None]
    expected = {
        "euclidean": np.sqrt((diff ** 2).sum(-1)),
        "sqeuclidean": (diff ** 2).sum(-1),
        "cosine": 1 - (q / np.linalg.norm(q, axis=1, keepdims=True))
        @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T,
    }[metric]
    out = compute_distance_matrix(q, g, metric, chunk=3)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_allclose(out, expected, atol=1e-10)
    out_t = compute_distance_matrix(torch.from_numpy(q).float(), torch.from_numpy(g).float(),
                                    metric)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    # float32: the inputs' rounding and the D-term sums of |q|^2 + |g|^2 - 2 q.g err by at most
    # (D + 3) u (|q|^2 + |g|^2) (u = 2^-24; for cosine the vectors are unit); the square root
    # divides that by 2d, where d is at least the distance's own rounding.
    u, d = 2.0 ** -24, q.shape[1]
    scale = {"cosine": np.full(expected.shape, 2.0)}.get(
        metric, (q ** 2).sum(1)[:, None] + (g ** 2).sum(1)[None])
    bound = (d + 3) * u * scale
    if metric == "euclidean":
        bound = bound / (2 * np.maximum(expected, np.sqrt(bound)))
    assert (np.abs(out_t.numpy() - expected) <= bound).all()


def test_distance_matrix_is_nonnegative_for_identical_vectors_and_rejects_bad_metric():
    x = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32) * 100
    assert (compute_distance_matrix(x, x) >= 0).all()
    with pytest.raises(ValueError, match="valid: euclidean"):
        compute_distance_matrix(x, x, "manhattan")

