"""Person search at scale: the people index's embedded store (LanceDB) on N synthetic entries.

Entries are ``N`` synthetic people of the demo model's embedding width (512): ``N / 10``
identities, each seen 10 times (its centre plus noise, L2-normalised: clusters like those of
track embeddings), with the twelve Market-1501 attributes drawn at random. Queries are new noisy
views of random identities. Reported, with the machine:

* build: rows written through ``LanceStore`` (bulk ``add``), the ANN index build
  (IVF-HNSW-SQ, cosine, and bitmap indices on the attribute columns), disk size;
* per query (``--queries``, top 10, through ``LanceStore.search``): p50 and p95 latency and
  recall@10 against exact search (NumPy, float64, the same rows), without a filter and with a
  filter that about 1 % of the rows pass (``upcolor=red hat=yes``, its share measured);
* the baseline measured in the same run: exact (flat) LanceDB search before the ANN index
  exists, and the exact scan in NumPy; ratios of p50 against it; and flat search at smaller
  sizes (``--flat-sizes``), which sets ``ANN_MIN_ROWS``.

Thumbnails are left out (``b""``): they add their own size to the disk (about 4 KB each for
``personkit track``'s 128-pixel JPEGs) and nothing to search time (never read by a search).

Usage::

    python benchmarks/bench_search.py [--n 1000000] [--queries 200] [--workdir /tmp/x]
        [--out benchmarks/results/search.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from personkit.data.constants import MARKET_ATTRIBUTES
from personkit.index.store import LanceStore
from personkit.runtime import describe_machine, machine_info

DIM, VIEWS, NOISE, SHARED = 512, 10, 0.5, 0.6
FILTER = {"upcolor": "red", "hat": "yes"}
HAT_YES = 0.08  # with upcolor uniform over 8 colours: about 1 % pass FILTER


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_rows(start: int, n: int, centres: np.ndarray, seed: int) -> tuple[dict, np.ndarray]:
    """Rows ``start..start+n`` (a columnar dict for pyarrow) and their vectors."""
    rng = np.random.default_rng([seed, start])
    ids = np.arange(start, start + n)
    person = ids // VIEWS
    vec = _unit(centres[person] + NOISE * rng.normal(size=(n, DIM)) / np.sqrt(DIM))
    vec = vec.astype(np.float32)
    cols: dict = {"id": [f"cam{p % 100}:{i}" for p, i in zip(person, ids, strict=True)],
                  "source": [f"cam{p % 100}" for p in person], "track_id": ids,
                  "first_frame": np.ones(n, np.int64), "last_frame": np.full(n, 50, np.int64),
                  "first_time": np.zeros(n), "last_time": np.full(n, 2.0),
                  "identity": [""] * n, "vector": list(vec), "thumbnail": [b""] * n}
    probs = {}
    for name, labels in MARKET_ATTRIBUTES.items():
        if name == "hat":
            lab = np.where(rng.random(n) < HAT_YES, "yes", "no")
        else:
            lab = np.asarray(labels)[rng.integers(len(labels), size=n)]
        cols[f"attr_{name}"], probs[name] = list(lab), rng.uniform(0.5, 1, n).round(4)
    cols["attributes"] = [json.dumps({a: [cols[f"attr_{a}"][i], float(probs[a][i])]
                                      for a in MARKET_ATTRIBUTES}) for i in range(n)]
    return cols, vec


def arrow_rows(cols: dict, schema: Any) -> Any:
    """``cols`` (:func:`make_rows`) as a pyarrow table of the store's ``schema``: each row its
    camera's one recording, the columns ``cols`` lacks (probabilities, times) null."""
    import pyarrow as pa

    n = len(cols["id"])
    cols = {"recording": cols["source"], **cols}
    return pa.Table.from_pydict({f.name: cols.get(f.name, [None] * n) for f in schema},
                                schema=schema)


def build(store: LanceStore | None, n: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    """Write ``n`` rows in chunks (``store`` None: only make them); returns every vector (for
    exact search)."""

    rng = np.random.default_rng(seed)
    common = _unit(rng.normal(size=(1, DIM)))  # a direction every embedding shares
    centres = _unit(SHARED * common + _unit(rng.normal(size=(n // VIEWS + 1, DIM))))
    vectors = np.empty((n, DIM), np.float32)
    for start in range(0, n, chunk):
        cols, vec = make_rows(start, min(chunk, n - start), centres, seed)
        if store is not None:
            store.table.add(arrow_rows(cols, store.schema))
        vectors[start:start + len(vec)] = vec
    return vectors


def queries(vectors: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 99])
    base = vectors[rng.integers(len(vectors), size=n)]
    return _unit(base + NOISE * rng.normal(size=base.shape) / np.sqrt(DIM)).astype(np.float32)


def exact_top10(vectors: np.ndarray, q: np.ndarray, mask: np.ndarray | None) -> list[set[int]]:
    idx = np.arange(len(vectors)) if mask is None else np.flatnonzero(mask)
    sims = q.astype(np.float64) @ vectors[idx].astype(np.float64).T
    return [set(idx[np.argsort(-row, kind="stable")[:10]].tolist()) for row in sims]


def timed_search(store: LanceStore, q: np.ndarray, where: dict) -> tuple[list[float], list]:
    times, hits = [], []
    for v in q:
        t = time.perf_counter()
        res = store.search(v, where, 10)
        times.append(time.perf_counter() - t)
        hits.append({int(h["track_id"]) for h in res})
    return times, hits


def summary(times: list[float], hits: list | None = None, truth: list | None = None) -> dict:
    ms = sorted(1000 * t for t in times)
    out = {"p50_ms": round(statistics.median(ms), 2),
           "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2), "queries": len(ms)}
    if hits is not None and truth is not None:
        out["recall@10"] = round(float(np.mean([len(h & t) / 10 for h, t in
                                                zip(hits, truth, strict=True)])), 4)
    return out


def filter_mask(store: LanceStore, n: int) -> np.ndarray:
    rows = store.table.search().select(["track_id", "attr_upcolor", "attr_hat"]).limit(n)
    table = rows.to_arrow()
    ok = (np.asarray(table["attr_upcolor"].to_pylist()) == "red") & (
        np.asarray(table["attr_hat"].to_pylist()) == "yes")
    mask = np.zeros(n, bool)
    mask[np.asarray(table["track_id"].to_pylist())[ok]] = True
    return mask


def flat_latency(workdir: Path, sizes: list[int], seed: int, n_q: int) -> dict:
    """Exact search latency of the store at smaller sizes (no ANN index)."""
    out = {}
    for size in sizes:
        store = LanceStore(workdir / f"flat{size}", DIM, list(MARKET_ATTRIBUTES),
                           ann_min_rows=10**12)
        vec = build(store, size, seed)
        times, _ = timed_search(store, queries(vec, n_q, seed), {})
        out[str(size)] = summary(times)
    return out


def qdrant_latency(workdir: Path, n: int, seed: int, n_q: int) -> dict:
    """The Qdrant adapter in qdrant-client's local mode (exact search in NumPy, in-process):
    write time and query latency at ``n`` rows, for the store choice (docs/search.md)."""
    from personkit.index.entries import Entry
    from personkit.index.qdrant import QdrantStore

    store = QdrantStore(DIM, list(MARKET_ATTRIBUTES), path=workdir / "qdrant")
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(n // VIEWS + 1, DIM)))
    cols, vec = make_rows(0, n, centres, seed)
    t = time.perf_counter()
    for start in range(0, n, 5000):
        store.replace_source(f"cam{start}", [Entry(
            f"cam{start}", i, vec[i], {a: tuple(v) for a, v in
                                       json.loads(cols["attributes"][i]).items()}, b"")
            for i in range(start, min(n, start + 5000))])
    write_s = time.perf_counter() - t
    q = queries(vec, n_q, seed)
    plain, _ = timed_search(store, q, {})
    filtered, _ = timed_search(store, q, FILTER)
    store.close()
    return {"n": n, "write_seconds": round(write_s, 1), "search": summary(plain),
            "search_filtered": summary(filtered)}


def build_and_scan(workdir: Path, args: argparse.Namespace) -> tuple:
    """Write the table, time exact search on it (LanceDB and NumPy), build the ANN index."""
    shutil.rmtree(workdir / "main", ignore_errors=True)
    store = LanceStore(workdir / "main", DIM, list(MARKET_ATTRIBUTES), ann_min_rows=10**12)
    t = time.perf_counter()
    vectors = build(store, args.n, args.seed)
    write_s = time.perf_counter() - t
    q = queries(vectors, args.queries, args.seed)
    mask = filter_mask(store, args.n)
    nq = args.flat_queries
    flat, _ = timed_search(store, q[:nq], {})  # exact LanceDB scan: the baseline
    flat_f, _ = timed_search(store, q[:nq], FILTER)
    t = time.perf_counter()
    for v in q[:nq]:  # float32 scan and partial sort: what a flat index in memory costs
        np.argpartition(-(vectors @ v), 10)[:10]
    numpy_ms = 1000 * (time.perf_counter() - t) / nq
    store.ann_min_rows = 1
    t = time.perf_counter()
    store._maybe_build_index()
    index_s = time.perf_counter() - t
    disk = sum(f.stat().st_size for f in (workdir / "main").rglob("*") if f.is_file())
    result = {"n": args.n, "dim": DIM, "filter": FILTER, "write_seconds": round(write_s, 1),
              "index_seconds": round(index_s, 1), "disk_mb": round(disk / 2**20, 1),
              "flat": summary(flat), "flat_filtered": summary(flat_f),
              "numpy_exact_ms": round(numpy_ms, 1),
              "flat_by_size": flat_latency(workdir, [int(x) for x in
                                                     args.flat_sizes.split(",") if x],
                                           args.seed, nq)}
    return result, store, vectors, q, mask


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--flat-queries", type=int, default=20)
    p.add_argument("--flat-sizes", default="10000,20000,100000")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--qdrant-n", type=int, default=20_000,
                   help="rows for the Qdrant local-mode comparison (0: skip)")
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default="benchmarks/results/search.json")
    p.add_argument("--reuse", action="store_true", help="search the table an earlier run left "
                   "in --workdir (same --n and --seed) instead of writing it again")
    args = p.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_search_"))
    if args.reuse:  # the earlier run's build and flat numbers, the ANN measured again
        result = json.loads(Path(args.out).read_text())
        store = LanceStore(workdir / "main", DIM, list(MARKET_ATTRIBUTES), ann_min_rows=1)
        assert store.count() == args.n == result["n"], "--reuse needs the same --n"
        vectors = build(None, args.n, args.seed)
        q = queries(vectors, args.queries, args.seed)
        mask = filter_mask(store, args.n)
    else:
        result, store, vectors, q, mask = build_and_scan(workdir, args)
    truth = exact_top10(vectors, q, None)
    truth_f = exact_top10(vectors, q, mask)
    ann, hits = timed_search(store, q, {})
    ann_f, hits_f = timed_search(store, q, FILTER)
    result.update({"machine": describe_machine(machine_info()),
                   "filter_share": round(float(mask.mean()), 5),
                   "ann": summary(ann, hits, truth),
                   "ann_filtered": summary(ann_f, hits_f, truth_f)})
    if args.qdrant_n:
        result["qdrant_local"] = qdrant_latency(workdir, args.qdrant_n, args.seed,
                                                args.flat_queries)
    result["speedup_p50"] = round(result["flat"]["p50_ms"] / result["ann"]["p50_ms"], 1)
    result["speedup_p50_filtered"] = round(
        result["flat_filtered"]["p50_ms"] / result["ann_filtered"]["p50_ms"], 1)
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
