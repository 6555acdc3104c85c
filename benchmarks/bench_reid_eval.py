"""Speed of the ReID evaluation on a Market-1501-sized problem (CPU).

1. ``evaluate_reid`` on a 3,368 x 19,732 float32 distance matrix with Market-like labels
   (750 ids, 2,798 pid-0 distractors, 3,819 pid -1 junk items, 6 cameras), against the
   straightforward per-query full-argsort loop of torchreid's ``eval_market1501``.
2. ``compute_distance_matrix`` for 2048-D float32 features of that size, against
   ``torch.cdist`` and a plain numpy expansion.

Usage: ``python benchmarks/bench_reid_eval.py [--quick] [--repeats N]``. Prints a markdown
table; timings are the median of ``--repeats`` runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from personkit.metrics import compute_distance_matrix, evaluate_reid

FULL = {"queries": 3368, "ids": 750, "good": 13115, "distractors": 2798, "junk": 3819,
        "dim": 2048}
QUICK = {"queries": 337, "ids": 75, "good": 1312, "distractors": 280, "junk": 382, "dim": 256}


def market_like(size: dict[str, int], seed: int = 0) -> tuple[np.ndarray, ...]:
    """Random tie-free float32 distances; same-id pairs are shifted closer."""
    rng = np.random.default_rng(seed)
    g_pids = np.concatenate([rng.integers(1, size["ids"] + 1, size["good"]),
                             np.zeros(size["distractors"], np.int64),
                             np.full(size["junk"], -1)])
    g_cams = rng.integers(1, 7, len(g_pids))
    q_pids = np.repeat(np.arange(1, size["ids"] + 1), -(-size["queries"] // size["ids"]))
    q_pids = q_pids[: size["queries"]]
    q_cams = rng.integers(1, 7, len(q_pids))
    n_g = len(g_pids)
    ranks = rng.permuted(np.tile(np.arange(n_g, dtype=np.float32), (len(q_pids), 1)), axis=1)
    dist = ranks / np.float32(n_g)  # distinct values per row: no ties
    dist -= (q_pids[:, None] == g_pids[None, :]) * np.float32(0.5 + 0.25 / n_g)
    return dist, q_pids, g_pids, q_cams, g_cams


def baseline_eval(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray,
                  q_camids: np.ndarray, g_camids: np.ndarray, max_rank: int = 50) -> dict:
    """torchreid ``eval_market1501`` logic, one full argsort per query (pid -1 is junk)."""
    all_cmc, all_ap, all_inp = [], [], []
    for q in range(distmat.shape[0]):
        order = np.argsort(distmat[q])
        remove = ((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q])) \
            | (g_pids[order] == -1)
        raw_cmc = (g_pids[order] == q_pids[q])[~remove].astype(np.int32)
        if not raw_cmc.any():
            continue
        cmc = raw_cmc.cumsum()
        pos_max = np.where(raw_cmc == 1)[0].max()
        all_inp.append(cmc[pos_max] / (pos_max + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        tmp_cmc = raw_cmc.cumsum() / (np.arange(len(raw_cmc)) + 1.0)
        all_ap.append((tmp_cmc * raw_cmc).sum() / raw_cmc.sum())
    return {"mAP": float(np.mean(all_ap)), "mINP": float(np.mean(all_inp)),
            "cmc": np.mean(all_cmc, axis=0)}


def numpy_distance(q: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Plain numpy ||q||^2 + ||g||^2 - 2 q g^T, clamped, square root."""
    d = (q * q).sum(1)[:, None] + (g * g).sum(1)[None] - 2 * (q @ g.T)
    return np.sqrt(np.maximum(d, 0, out=d), out=d)


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def peak_traced_mib(fn: Callable[[], Any]) -> float:
    """Peak numpy/Python allocation during ``fn`` (tracemalloc; not timed)."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def bench_eval(size: dict[str, int], repeats: int) -> list[str]:
    dist, q_pids, g_pids, q_cams, g_cams = market_like(size)
    args = (dist, q_pids, g_pids, q_cams, g_cams)
    t_ours, ours = median_time(lambda: evaluate_reid(*args), repeats)
    t_base, base = median_time(lambda: baseline_eval(*args), repeats)
    assert abs(ours["mAP"] - base["mAP"]) < 1e-9 and abs(ours["mINP"] - base["mINP"]) < 1e-9
    assert np.allclose(ours["cmc"], base["cmc"])
    mem_ours = peak_traced_mib(lambda: evaluate_reid(*args))
    mem_base = peak_traced_mib(lambda: baseline_eval(*args))
    shape = f"{dist.shape[0]:,} x {dist.shape[1]:,} float32"
    return [
        f"| evaluate_reid, {shape} | {t_ours:.3f} | {mem_ours:.0f} | "
        f"{t_base / t_ours:.1f}x faster |",
        f"| baseline: per-query argsort loop (torchreid logic) | {t_base:.3f} | {mem_base:.0f} "
        f"| 1.0x |",
        f"| (check: mAP {ours['mAP']:.6f}, mAP_official {ours['mAP_official']:.6f}, "
        f"rank-1 {ours['cmc'][0]:.4f}; equal to the baseline) | | | |",
    ]


def bench_distance(size: dict[str, int], repeats: int) -> list[str]:
    rng = np.random.default_rng(1)
    n_g = size["good"] + size["distractors"] + size["junk"]
    q = rng.standard_normal((size["queries"], size["dim"]), dtype=np.float32)
    g = rng.standard_normal((n_g, size["dim"]), dtype=np.float32)
    gflop = 2 * q.shape[0] * n_g * size["dim"] / 1e9
    qt, gt = torch.from_numpy(q), torch.from_numpy(g)
    runs = [
        ("compute_distance_matrix (euclidean)", lambda: compute_distance_matrix(q, g)),
        ("baseline: torch.cdist", lambda: torch.cdist(qt, gt).numpy()),
        ("baseline: numpy expansion", lambda: numpy_distance(q, g)),
    ]
    rows, results = [], []
    for name, fn in runs:
        t, out = median_time(fn, repeats)
        results.append(out)
        rows.append(f"| {name}, {q.shape[0]:,} x {n_g:,} x {size['dim']} | {t:.3f} | "
                    f"{gflop / t:.1f} GFLOP/s |")
    err = max(float(np.abs(results[0] - r).max()) for r in results[1:])
    rows.append(f"| (check: max abs difference to the baselines {err:.2e}) | | |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 10x smaller problem")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up")
    args = parser.parse_args()
    size = QUICK if args.quick else FULL
    print(f"{datetime.date.today()}, {cpu_model()}, nproc {os.cpu_count()}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy "
          f"{np.__version__}; median of {args.repeats} runs after a warm-up; load average "
          f"{os.getloadavg()[0]:.1f} at start\n")
    print("| ReID evaluation | seconds | peak traced MiB | speed-up |")
    print("|---|---|---|---|")
    print("\n".join(bench_eval(size, args.repeats)))
    print("\n| Distance matrix | seconds | throughput |")
    print("|---|---|---|")
    print("\n".join(bench_distance(size, args.repeats)))
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
