"""ReidEvaluator fed in chunks equals the pure functions on the whole set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from personkit.metrics import ReidEvaluator, compute_distance_matrix, evaluate_reid


def reid_set(seed=0, n=120, dim=16):
    rng = np.random.default_rng(seed)
    pids = rng.integers(-1, 12, n)
    cams = rng.integers(1, 4, n)
    emb = rng.normal(size=(12 + 2, dim))[pids + 2] + 0.8 * rng.normal(size=(n, dim))
    is_query = (rng.random(n) < 0.25) & (pids > 0)
    return emb.astype(np.float32), pids, cams, is_query


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_reid_evaluator_chunks_equal_pure_function(metric):
    emb, pids, cams, is_query = reid_set()
    ev = ReidEvaluator(metric=metric, max_rank=10)
    for s in (slice(0, 30), slice(30, 31), slice(31, 120)):
        ev.process(torch.from_numpy(emb[s]), torch.from_numpy(pids[s]), cams[s], is_query[s])
    out = ev.evaluate()
    q, g = is_query, ~is_query  # pid -1 gallery items included: evaluate_reid drops them
    dist = compute_distance_matrix(emb[q], emb[g], metric)
    expected = evaluate_reid(dist, pids[q], pids[g], cams[q], cams[g], max_rank=10)
    for key in ("mAP", "mAP_official", "mINP", "num_valid_queries", "num_excluded_queries"):
        assert out[key] == pytest.approx(expected[key])
    np.testing.assert_allclose(out["cmc"], expected["cmc"])
    assert (out["rank1"], out["rank5"], out["rank10"]) == pytest.approx(
        tuple(expected["cmc"][[0, 4, 9]]))
    assert 0 <= out["mAP_official"] <= out["mAP"] <= 1


def test_reid_evaluator_scalar_is_query_and_reset():
    emb, pids, cams, is_query = reid_set(seed=1)
    ev = ReidEvaluator()
    ev.process(emb[is_query], pids[is_query], cams[is_query], True)
    ev.process(emb[~is_query], pids[~is_query], cams[~is_query], False)
    first = ev.evaluate()
    assert len(first["cmc"]) == 50 and first["num_valid_queries"] > 0
    ev.reset()
    with pytest.raises(ValueError, match="before any process"):
        ev.evaluate()
