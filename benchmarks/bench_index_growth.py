"""An index grown by appends: the embedded store (LanceDB) with and without ``optimize()``
after its writes.

The people index is not written once: every ``personkit index`` run adds sources to it. The
ANN index is built when the table reaches ``ANN_MIN_ROWS``; rows written after it are searched
flat beside it until ``optimize()`` folds them in. This grows two tables side by side to
``--rows`` entries in ``--appends`` equal appends (each a new source, written through
``LanceStore.replace_rows``, the path ``personkit index`` takes):

* ``optimize``: the store as shipped (a write leaving ``OPTIMIZE_MIN_ROWS`` rows outside the
  ANN index optimizes, removing versions older than ``CLEANUP_AGE``);
* ``no_optimize``: the same with optimize never called (the index built once, as before).

The entries are bench_search.py's (width 512, ten noisy views per synthetic person, the twelve
Market-1501 attributes at random; thumbnails left out). At ``--checkpoints`` points of the
growth and at the end, per table: recall@10 against exact search over the rows so far (NumPy,
float64) and latency through ``LanceStore.search`` (top 10) without a filter and with
``upcolor=red hat=yes`` (about 1 % of the rows pass), each of ``--queries`` queries
(``--baseline-queries`` of them for ``no_optimize``, whose flat scan is slow) timed
``--repeats`` times after a warm-up (a query's time: the median of its repeats; reported: p50
and p95 over the queries). Also per append: the write, the index build and the optimize time,
the rows left outside the ANN index; at the end the disk size and the table versions kept.

Usage::

    python benchmarks/bench_index_growth.py [--rows 1000000] [--appends 50] [--queries 200]
        [--baseline-queries 20] [--repeats 3] [--checkpoints 4] [--workdir /tmp/x]
        [--out benchmarks/results/index_growth.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bench_search import DIM, FILTER, SHARED, VIEWS, _unit, arrow_rows, make_rows, queries

from personkit.data.constants import MARKET_ATTRIBUTES
from personkit.index.store import ANN_MIN_ROWS, CLEANUP_AGE, OPTIMIZE_MIN_ROWS, LanceStore
from personkit.runtime import describe_machine, machine_info

ARMS = {"optimize": OPTIMIZE_MIN_ROWS, "no_optimize": None}


def timed(log: dict[str, float], key: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` adding its seconds to ``log[key]`` (to split a write's time into its steps)."""
    def run() -> Any:
        t = time.perf_counter()
        try:
            return fn()
        finally:
            log[key] = log.get(key, 0.0) + time.perf_counter() - t
    return run


def open_arm(workdir: Path, name: str, ann_min_rows: int) -> tuple[LanceStore, dict]:
    """A fresh store for one arm, its index build and optimize timed into the returned log."""
    shutil.rmtree(workdir / name, ignore_errors=True)
    store = LanceStore(workdir / name, DIM, list(MARKET_ATTRIBUTES), ann_min_rows=ann_min_rows,
                       optimize_min_rows=ARMS[name])
    log: dict[str, float] = {}
    store.optimize = timed(log, "optimize_s", store.optimize)  # type: ignore[method-assign]
    build = store._maybe_build_index
    store._maybe_build_index = timed(log, "index_s", build)  # type: ignore[method-assign]
    return store, log


def append_table(store: LanceStore, i: int, start: int, n: int, centres: np.ndarray,
                 seed: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """Append ``i`` (rows ``start..start+n``, source ``append{i}``) as an Arrow table, its
    vectors, and which rows pass ``FILTER``."""

    cols, vec = make_rows(start, n, centres, seed)
    cols["source"] = [f"append{i}"] * n
    cols["id"] = [f"append{i}:{t}" for t in cols["track_id"]]
    mask = np.ones(n, bool)
    for name, label in FILTER.items():
        mask &= np.asarray(cols[f"attr_{name}"]) == label
    return arrow_rows(cols, store.schema), vec, mask


def exact_top10(vectors: np.ndarray, q: np.ndarray, mask: np.ndarray | None,
                chunk: int = 100_000) -> list[set[int]]:
    """The exact top 10 (float64 cosine on unit vectors) of every query, in row chunks."""
    idx = np.arange(len(vectors)) if mask is None else np.flatnonzero(mask)
    best_s = np.full((len(q), 0), -np.inf)
    best_i = np.zeros((len(q), 0), np.int64)
    q64 = q.astype(np.float64)
    for start in range(0, len(idx), chunk):
        part = idx[start:start + chunk]
        sims = np.concatenate([best_s, q64 @ vectors[part].astype(np.float64).T], axis=1)
        ids = np.concatenate([best_i, np.broadcast_to(part, (len(q), len(part)))], axis=1)
        top = np.argsort(-sims, axis=1, kind="stable")[:, :10]
        best_s, best_i = np.take_along_axis(sims, top, 1), np.take_along_axis(ids, top, 1)
    return [set(row.tolist()) for row in best_i]


def measure(store: LanceStore, q: np.ndarray, where: dict, truth: list[set[int]],
            repeats: int) -> dict[str, float]:
    """p50 and p95 over the queries of each query's median time, and recall@10."""
    for v in q[:5]:  # warm-up: index and data caches
        store.search(v, where, 10)
    times, recalls = [], []
    for v, t in zip(q, truth, strict=True):
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            hits = store.search(v, where, 10)
            runs.append(time.perf_counter() - start)
        times.append(1000 * statistics.median(runs))
        recalls.append(len({int(h["track_id"]) for h in hits} & t) / 10)
    ms = sorted(times)
    return {"p50_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2),
            "recall@10": round(float(np.mean(recalls)), 4), "queries": len(ms)}


def checkpoint(stores: dict, vectors: np.ndarray, mask: np.ndarray,
               args: argparse.Namespace) -> dict[str, Any]:
    """Recall and latency of every arm on the rows written so far."""
    q = queries(vectors, args.queries, args.seed)
    truth, truth_f = exact_top10(vectors, q, None), exact_top10(vectors, q, mask)
    out: dict[str, Any] = {"rows": len(vectors), "filter_share": round(float(mask.mean()), 5)}
    for name, (store, _) in stores.items():
        m = args.queries if ARMS[name] is not None else args.baseline_queries  # flat: slow
        out[name] = {"unindexed_rows": store.unindexed_rows(),
                     "index_deltas": _deltas(store),
                     "search": measure(store, q[:m], {}, truth[:m], args.repeats),
                     "search_filtered": measure(store, q[:m], FILTER, truth_f[:m],
                                                args.repeats)}
    print(json.dumps(out), flush=True)
    return out


def _deltas(store: LanceStore) -> int | None:
    name = store._vector_index()
    stats = store.table.index_stats(name) if name else None
    return int(stats.num_indices) if stats else None


def grow(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Both arms grown append by append, measured at the checkpoints."""
    stores = {name: open_arm(workdir, name, args.ann_min_rows) for name in ARMS}
    rng = np.random.default_rng(args.seed)
    common = _unit(rng.normal(size=(1, DIM)))
    centres = _unit(SHARED * common + _unit(rng.normal(size=(args.rows // VIEWS + 1, DIM))))
    vectors = np.empty((args.rows, DIM), np.float32)
    mask = np.zeros(args.rows, bool)
    size = args.rows // args.appends
    marks = {round(args.appends * (c + 1) / args.checkpoints) for c in range(args.checkpoints)}
    appends: dict[str, list] = {name: [] for name in ARMS}
    checkpoints = []
    for i in range(args.appends):
        start = i * size
        n = size if i < args.appends - 1 else args.rows - start
        for name, (store, log) in stores.items():
            data, vec, ok = append_table(store, i, start, n, centres, args.seed)
            log.clear()
            t = time.perf_counter()
            store.replace_rows(f"append{i}", data)
            total = time.perf_counter() - t
            steps = {k: round(v, 2) for k, v in log.items()}
            appends[name].append({"rows": start + n, "write_s": round(total, 2), **steps,
                                  "unindexed_rows": store.unindexed_rows()})
        vectors[start:start + n], mask[start:start + n] = vec, ok
        print(json.dumps({"append": i + 1, **{k: v[-1] for k, v in appends.items()}}),
              flush=True)
        if i + 1 in marks:
            checkpoints.append(checkpoint(stores, vectors[:start + n], mask[:start + n], args))
    return {"appends": appends, "checkpoints": checkpoints,
            "final": {name: _final(store, workdir / name, appends[name])
                      for name, (store, _) in stores.items()}}


def _final(store: LanceStore, path: Path, appends: list[dict]) -> dict[str, Any]:
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {"disk_mb": round(disk / 2**20, 1), "versions": len(store.table.list_versions()),
            "write_s_total": round(sum(a["write_s"] for a in appends), 1),
            "index_s_total": round(sum(a.get("index_s", 0.0) for a in appends), 1),
            "optimize_s_total": round(sum(a.get("optimize_s", 0.0) for a in appends), 1),
            "optimizes": sum("optimize_s" in a for a in appends)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--appends", type=int, default=50)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--baseline-queries", type=int, default=20,
                   help="queries of the no_optimize table (its flat scan takes seconds a "
                   "query at a million rows)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--checkpoints", type=int, default=4)
    p.add_argument("--ann-min-rows", type=int, default=ANN_MIN_ROWS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default="benchmarks/results/index_growth.json")
    args = p.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_growth_"))
    t = time.perf_counter()
    result = {"machine": describe_machine(machine_info()), "rows": args.rows, "dim": DIM,
              "appends": args.appends, "filter": FILTER, "ann_min_rows": args.ann_min_rows,
              "optimize_min_rows": OPTIMIZE_MIN_ROWS,
              "cleanup_age_s": CLEANUP_AGE.total_seconds(), **grow(args, workdir)}
    result["seconds"] = round(time.perf_counter() - t, 1)
    print(json.dumps({k: result[k] for k in ("final", "seconds")}, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
