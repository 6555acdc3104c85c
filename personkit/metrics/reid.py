"""Person re-identification metrics: distances, CMC, mAP, mINP and k-reciprocal re-ranking.

Protocol: Market-1501 single query (Zheng et al., ICCV 2015), as in Liang Zheng's official
``evaluation.m`` / ``compute_AP.m`` and torchreid ``metrics/rank.py`` (``eval_market1501``),
with the rules below; ``tests/metrics/test_reid_eval.py`` checks them on hand-computed
rankings.

* For a query with pid ``p`` and camera ``c``, gallery items with pid ``p`` and camera ``c``
  and every pid ``-1`` item (junk) are removed from its ranking; pid ``0`` distractors stay as
  ordinary negatives. Good matches are pid ``p`` in another camera.
* Ties in distance are broken by gallery index (a stable sort, as the official MATLAB code).
* Queries without any good match are left out of every mean and counted
  (``num_excluded_queries``), as torchreid does.

Re-ranking follows Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017 (reference code ``re_ranking``), restructured to keep only top-k
neighbour lists and sparse weights instead of dense N x N matrices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

ArrayLike = Any  # numpy array, torch tensor or nested sequence
METRICS: tuple[str, ...] = ("euclidean", "sqeuclidean", "cosine")


# ----------------------------------------------------------------------------- distances
def compute_distance_matrix(query: ArrayLike, gallery: ArrayLike, metric: str = "euclidean",
                            chunk: int = 4096) -> ArrayLike:
    """Q x G distances from one matrix product per query chunk (no pairwise loops).

    ``euclidean`` is ``sqrt(max(0, |q|^2 + |g|^2 - 2 q.g))``, ``sqeuclidean`` the same without
    the square root (torchreid's "euclidean"), ``cosine`` is ``1 - cos(q, g)``. float32 unless
    the inputs are float64; the expansion loses precision for near-identical float32 vectors.

    Args:
        query: Q x D features (numpy array or torch tensor).
        gallery: G x D features.
        metric: one of :data:`METRICS`.
        chunk: query rows per matrix product. Each product and the element-wise steps write
            straight into the result, so there is no Q x G temporary at any chunk size;
            large chunks are faster (BLAS re-packs the gallery on every call).

    Returns:
        A numpy array when ``query`` is one, else a tensor on the inputs' device.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    q, g = _float_tensor(query), _float_tensor(gallery)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"need Q x D and G x D features, got {tuple(q.shape)}, {tuple(g.shape)}")
    g = g.to(q.dtype)
    with torch.no_grad():
        if metric == "cosine":
            q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
        out = q.new_empty((q.shape[0], g.shape[0]))
        g_t, g_sq, q_sq = g.t(), (g * g).sum(1)[None], (q * q).sum(1)[:, None]
        for i in range(0, q.shape[0], chunk):
            o = out[i:i + chunk]
            if metric == "cosine":
                torch.addmm(torch.ones_like(g_sq), q[i:i + chunk], g_t, alpha=-1.0, out=o)
                continue
            torch.addmm(g_sq, q[i:i + chunk], g_t, alpha=-2.0, out=o)
            o.add_(q_sq[i:i + chunk]).clamp_min_(0.0)
            if metric == "euclidean":
                o.sqrt_()
    return out.cpu().numpy() if isinstance(query, np.ndarray) else out


def _float_tensor(x: ArrayLike) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


# ----------------------------------------------------------------------------- evaluation
def evaluate_reid(distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike,
                  g_camids: ArrayLike, max_rank: int = 50, chunk: int = 256) -> dict[str, Any]:
    """CMC, mAP (two AP conventions) and mINP under the Market-1501 protocol.

    Instead of sorting every row's indices, each good match's rank is the number of valid
    gallery items with a smaller distance (plus earlier-index ties), found by ``searchsorted``
    on the sorted row; queries are processed ``chunk`` rows at a time.

    Args:
        distmat: Q x G distances (smaller is more similar); must not contain NaN.
        q_pids, g_pids, q_camids, g_camids: identity and camera labels.
        max_rank: length of the returned CMC curve.
        chunk: queries per block; the temporary memory is about one copy of a chunk x G block.

    Returns:
        ``mAP`` (non-interpolated, torchreid: AP = mean_i (i+1)/(r_i+1)), ``mAP_official``
        (trapezoidal, official ``compute_AP.m``), ``mINP`` (fast-reid: G / (r_last + 1)),
        ``cmc`` (array, ``cmc[k-1]`` = rank-k accuracy), ``num_valid_queries`` and
        ``num_excluded_queries``, and ``per_query`` (``AP`` and ``rank1`` of each valid query,
        in query order, and ``query``, its position in the query list: the test items a
        study pairs two rows by). All scores are fractions in
        [0, 1].

    Raises:
        ValueError: on mismatched shapes, NaN distances or when no query has a good match.
    """
    distmat = np.asarray(distmat)
    if not np.issubdtype(distmat.dtype, np.floating):
        distmat = distmat.astype(np.float64)
    q_pids, q_camids, g_pids, g_camids = (
        np.asarray(a).reshape(-1) for a in (q_pids, q_camids, g_pids, g_camids))
    if distmat.shape != (len(q_pids), len(g_pids)) or len(q_camids) != len(q_pids) \
            or len(g_camids) != len(g_pids):
        raise ValueError(f"distmat {distmat.shape} does not match the {len(q_pids)} query and "
                         f"{len(g_pids)} gallery labels")
    keep = g_pids != -1
    cols = None if keep.all() else np.flatnonzero(keep)
    g_pids, g_camids = g_pids[keep], g_camids[keep]
    by_pid = np.argsort(g_pids, kind="stable")
    q_idx, ranks = [], []
    for i in range(0, len(q_pids), chunk):
        rows, r = _good_ranks(distmat[i:i + chunk], q_pids[i:i + chunk], q_camids[i:i + chunk],
                              g_pids, g_camids, cols, by_pid)
        q_idx.append(rows + i)
        ranks.append(r)
    return _summarise(np.concatenate(q_idx), np.concatenate(ranks), len(q_pids), max_rank)


def _good_ranks(block: np.ndarray, q_pids: np.ndarray, q_cams: np.ndarray, g_pids: np.ndarray,
                g_cams: np.ndarray, cols: np.ndarray | None,
                by_pid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query row, 0-based rank after junk removal) of every good match in a query block."""
    srt = np.array(block) if cols is None else np.take(block, cols, axis=1)  # C order
    rows, gal = _same_pid(q_pids, g_pids, by_pid)
    junk = q_cams[rows] == g_cams[gal]
    srt[rows[junk], gal[junk]] = np.inf  # same pid, same camera: sorts after every valid item
    rows, gal = rows[~junk], gal[~junk]
    d_good = srt[rows, gal]
    srt.sort(axis=1)
    if np.isnan(srt[:, -1]).any():  # np.sort puts NaN last
        raise ValueError("distmat contains NaN")
    below, upto = np.empty(len(rows), np.int64), np.empty(len(rows), np.int64)
    bounds = np.searchsorted(rows, np.arange(len(srt) + 1))
    for r in np.flatnonzero(np.diff(bounds)):
        s = slice(bounds[r], bounds[r + 1])
        below[s] = np.searchsorted(srt[r], d_good[s], side="left")
        upto[s] = np.searchsorted(srt[r], d_good[s], side="right")
    for k in np.flatnonzero(upto - below > 1):  # tied with another item: break by index
        r, g = rows[k], gal[k]
        valid = (g_pids != q_pids[r]) | (g_cams != q_cams[r])
        row = np.where(valid, block[r] if cols is None else block[r, cols], np.nan)
        below[k] = np.count_nonzero(row < d_good[k]) + np.count_nonzero(row[:g] == d_good[k])
    return rows, below


def _same_pid(q_pids: np.ndarray, g_pids: np.ndarray,
              by_pid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (query row, gallery index) pairs with equal pids, rows ascending."""
    sorted_pids = g_pids[by_pid]
    lo = np.searchsorted(sorted_pids, q_pids, side="left")
    cnt = np.searchsorted(sorted_pids, q_pids, side="right") - lo
    pos = np.repeat(lo - (np.cumsum(cnt) - cnt), cnt) + np.arange(cnt.sum())
    return np.repeat(np.arange(len(q_pids)), cnt), by_pid[pos]


def _summarise(q_idx: np.ndarray, ranks: np.ndarray, num_q: int, max_rank: int) -> dict[str, Any]:
    """Per-query AP / INP / first hit from the ranks of all good matches, then the means."""
    order = np.lexsort((ranks, q_idx))
    q_idx, ranks = q_idx[order], ranks[order]
    n_good = np.bincount(q_idx, minlength=num_q)
    valid = n_good > 0
    if not valid.any():
        raise ValueError("no query has a valid match in the gallery")
    start = np.cumsum(n_good) - n_good
    i = np.arange(len(ranks)) - start[q_idx]  # 0-based index among the query's good matches
    prec = (i + 1) / (ranks + 1)
    prec_prev = np.where(ranks > 0, i / np.maximum(ranks, 1), 1.0)
    n = n_good[valid]
    ap = np.bincount(q_idx, prec, num_q)[valid] / n
    ap_official = np.bincount(q_idx, (prec + prec_prev) / 2, num_q)[valid] / n
    inp = n / (ranks[(start + n_good - 1)[valid]] + 1)
    first = ranks[start[valid]]
    cmc = np.cumsum(np.bincount(np.minimum(first, max_rank), minlength=max_rank + 1))[:max_rank]
    return {
        "mAP": float(ap.mean()),
        "mAP_official": float(ap_official.mean()),
        "mINP": float(inp.mean()),
        "cmc": cmc / len(first),
        "num_valid_queries": int(valid.sum()),
        "num_excluded_queries": int(num_q - valid.sum()),
        # per valid query, in query order, with its position in the query list: the items
        # two rows' intervals pair by (personkit study)
        "per_query": {"AP": ap, "rank1": (first == 0).astype(np.float64),
                      "query": np.flatnonzero(valid)},
    }


# ----------------------------------------------------------------------------- re-ranking
def re_rank(q_g_dist: ArrayLike, q_q_dist: ArrayLike, g_g_dist: ArrayLike, k1: int = 20,
            k2: int = 6, lambda_value: float = 0.3, chunk: int = 1024) -> np.ndarray:
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017) from precomputed distances.

    Same arguments and result as the reference ``re_ranking`` (which squares the distances it
    is given and normalises each row by its maximum), but only the top ``k1 + 1`` neighbour
    lists and sparse k-reciprocal weights are kept, and the Jaccard distance is computed for
    query rows only. The three inputs are read, never concatenated.

    Returns:
        Q x G float32 re-ranked distances.
    """
    qg, qq, gg = (np.asarray(a) for a in (q_g_dist, q_q_dist, g_g_dist))
    nq = qg.shape[0]

    def rows(i0: int, i1: int) -> np.ndarray:
        parts = []
        if i0 < nq:
            parts.append(np.hstack([qq[i0:min(i1, nq)], qg[i0:min(i1, nq)]]))
        if i1 > nq:
            a, b = max(i0, nq) - nq, i1 - nq
            parts.append(np.hstack([qg[:, a:b].T, gg[a:b]]))
        return np.vstack(parts).astype(np.float64) ** 2

    def pairs(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        iq, jq = i < nq, j < nq
        d = np.where(iq & jq, qq[np.where(iq, i, 0), np.where(jq, j, 0)], 0.0)
        d = np.where(iq & ~jq, qg[np.where(iq, i, 0), np.where(jq, 0, j - nq)], d)
        d = np.where(~iq & jq, qg[np.where(jq, j, 0), np.where(iq, 0, i - nq)], d)
        d = np.where(~iq & ~jq, gg[np.where(iq, 0, i - nq), np.where(jq, 0, j - nq)], d)
        return d.astype(np.float64) ** 2

    return _k_reciprocal(rows, pairs, nq, nq + qg.shape[1], k1, k2, lambda_value, chunk)


def re_rank_features(query: ArrayLike, gallery: ArrayLike, metric: str = "euclidean",
                     k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                     chunk: int = 1024) -> np.ndarray:
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017) computed from features.

    Equals :func:`re_rank` on the ``metric`` distances of the features, but distance rows are
    computed chunk by chunk, so memory stays O(N k) besides the Q x G result.
    """
    feats = torch.cat([_float_tensor(query), _float_tensor(gallery)]).cpu().numpy()
    nq = len(query)

    def rows(i0: int, i1: int) -> np.ndarray:
        d = compute_distance_matrix(feats[i0:i1], feats, metric, chunk)
        return d.astype(np.float64) ** 2

    def pairs(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        d = [_paired_distance(feats[i[s]], feats[j[s]], metric) for s in _slices(len(i), 8192)]
        return np.concatenate(d).astype(np.float64) ** 2 if d else np.zeros(0)

    return _k_reciprocal(rows, pairs, nq, len(feats), k1, k2, lambda_value, chunk)


def _paired_distance(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Row-wise distance with the same formulas as :func:`compute_distance_matrix`."""
    if metric == "cosine":
        na = np.maximum(np.linalg.norm(a, axis=1), 1e-12)
        nb = np.maximum(np.linalg.norm(b, axis=1), 1e-12)
        return 1 - (a * b).sum(1) / (na * nb)
    d = np.maximum((a * a).sum(1) + (b * b).sum(1) - 2 * (a * b).sum(1), 0)
    return np.sqrt(d) if metric == "euclidean" else d


Rows = Callable[[int, int], np.ndarray]
Pairs = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _k_reciprocal(rows: Rows, pairs: Pairs, nq: int, n: int, k1: int, k2: int, lam: float,
                  chunk: int) -> np.ndarray:
    """Core of the re-ranking; ``rows`` gives squared distance rows, ``pairs`` single ones."""
    nbr, row_max = _nearest(rows, n, min(k1 + 1, n), chunk)
    kr = _reciprocal(nbr)
    kr_half = _reciprocal(nbr[:, :int(np.around(k1 / 2)) + 1])
    v = _expansion_weights(pairs, nbr, kr, kr_half, row_max, chunk)
    if k2 != 1:
        k = min(k2, nbr.shape[1])
        avg = sp.csr_matrix((np.full(n * k, 1.0 / k), nbr[:, :k].ravel(),
                             np.arange(0, n * k + 1, k)), shape=(n, n))
        v = (avg @ v).tocsr()
    out = np.empty((nq, n - nq), np.float32)
    gal_cols = v[nq:].tocsc()
    for q0, q1 in _cost_chunks(v[:nq], gal_cols):
        t = _min_overlap(v[q0:q1], gal_cols)
        jaccard = 1 - t / (2 - t)
        orig = rows(q0, q1)[:, nq:] / row_max[q0:q1, None]
        out[q0:q1] = jaccard * (1 - lam) + orig * lam
    return out


def _nearest(rows: Rows, n: int, k: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k neighbour indices (ascending distance, ties by index) and every row's maximum."""
    nbr, row_max = np.empty((n, k), np.int64), np.empty(n)
    for s in _slices(n, chunk):
        d = rows(s.start, s.stop)
        row_max[s] = d.max(1)
        idx = np.argpartition(d, k - 1, axis=1)[:, :k] if k < n else np.argsort(d, axis=1)
        order = np.lexsort((idx, np.take_along_axis(d, idx, 1)), axis=1)
        nbr[s] = np.take_along_axis(idx, order, 1)
    return nbr, np.maximum(row_max, np.finfo(np.float64).tiny)


def _reciprocal(nbr: np.ndarray) -> np.ndarray:
    """mask[i, a]: item i is among the neighbours of its neighbour ``nbr[i, a]``."""
    me = np.arange(len(nbr))[:, None, None]
    return np.concatenate([(nbr[nbr[s]] == me[s]).any(-1) for s in _slices(len(nbr), 4096)])


def _expansion_weights(pairs: Pairs, nbr: np.ndarray, kr: np.ndarray, kr_half: np.ndarray,
                       row_max: np.ndarray, chunk: int) -> sp.csr_matrix:
    """Sparse V: exp(-d) weights over each item's expanded k-reciprocal set, rows summing to 1."""
    half = np.where(kr_half, nbr[:, :kr_half.shape[1]], -1)  # R(c, k1/2), padded with -1
    half_size = kr_half.sum(1)
    all_rows, all_cols, all_w = [], [], []
    for s in _slices(len(nbr), chunk):
        members = np.where(kr[s], nbr[s], -1)  # R(i, k1)
        cand = half[np.maximum(members, 0)]  # (B, k, k/2) R(c, k1/2) for every c in R(i, k1)
        inter = ((cand[..., None] == members[:, None, None, :]).any(-1) & (cand >= 0)).sum(-1)
        take = (members >= 0) & (inter > 2 / 3 * half_size[np.maximum(members, 0)])
        union = np.concatenate([members, np.where(take[..., None], cand, -1).reshape(
            len(members), -1)], axis=1)
        union.sort(axis=1)
        keep = (union >= 0) & np.concatenate(
            [np.ones((len(union), 1), bool), union[:, 1:] != union[:, :-1]], axis=1)
        r, c = np.nonzero(keep)
        rows, cols = r + s.start, union[r, c]
        w = np.exp(-pairs(rows, cols) / row_max[rows])
        all_rows.append(rows)
        all_cols.append(cols)
        all_w.append(w / np.bincount(r, w, len(union))[r])
    rows, cols, w = (np.concatenate(a) for a in (all_rows, all_cols, all_w))
    return sp.csr_matrix((w, (rows, cols)), shape=(len(nbr), len(nbr)))


def _cost_chunks(vq: sp.csr_matrix, gal_cols: sp.csc_matrix,
                 budget: int = 4_000_000) -> list[tuple[int, int]]:
    """Split query rows so that each chunk gathers at most ~``budget`` (query, gallery) terms."""
    rows = np.repeat(np.arange(vq.shape[0]), np.diff(vq.indptr))
    cost = np.bincount(rows, np.diff(gal_cols.indptr)[vq.indices], vq.shape[0])
    bounds, start, acc = [], 0, 0
    for i, c in enumerate(cost):
        if acc + c > budget and i > start:
            bounds.append((start, i))
            start, acc = i, 0
        acc += c
    return [*bounds, (start, vq.shape[0])] if vq.shape[0] > start else bounds


def _min_overlap(vq: sp.csr_matrix, gal_cols: sp.csc_matrix) -> np.ndarray:
    """t[i, j] = sum_k min(V[i, k], V[j, k]) via the inverted (column) index of the gallery."""
    rows = np.repeat(np.arange(vq.shape[0]), np.diff(vq.indptr))
    cnt = np.diff(gal_cols.indptr)[vq.indices]
    pos = np.repeat(gal_cols.indptr[vq.indices] - (np.cumsum(cnt) - cnt), cnt) \
        + np.arange(cnt.sum())
    ng = gal_cols.shape[0]
    flat = np.repeat(rows, cnt) * ng + gal_cols.indices[pos]
    vals = np.minimum(np.repeat(vq.data, cnt), gal_cols.data[pos])
    return np.bincount(flat, vals, vq.shape[0] * ng).reshape(vq.shape[0], ng)


def _slices(n: int, step: int) -> list[slice]:
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]
