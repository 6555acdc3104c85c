"""What forgetting costs (issue 37): ``LanceStore.forget`` (the rows deleted, the data files that
held them rewritten, the indices rebuilt, every older version removed) against two baselines
measured the same way: LanceDB's ``delete`` alone (the rows leave the table; their bytes stay
in the data file and every version) and ``delete`` followed by ``optimize`` keeping no older
version (their bytes still stay in a data file compaction did not rewrite, as
tests/index/test_forget.py shows).

A table of ``--rows`` entries (bench_search.py's: width 512, the twelve Market-1501 attributes,
plus a random ``--thumb-bytes`` thumbnail each) with its ANN index is copied afresh for every
timed call; each call forgets ``--ids`` random entries (1: a person's request; 1000: a
retention run). Reported per arm: the median of ``--repeats`` calls, the ratio to the baseline,
and whether the forgotten thumbnails' bytes are still in any file of the table afterwards.

Usage::

    python benchmarks/bench_forget.py [--rows 50000] [--thumb-bytes 3000] [--ids 1,1000]
        [--repeats 3] [--workdir /tmp/x] [--out benchmarks/results/forget.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from bench_search import DIM, SHARED, VIEWS, _unit, arrow_rows, make_rows

from personkit.data.constants import MARKET_ATTRIBUTES
from personkit.index.store import LanceStore, _quote
from personkit.runtime import describe_machine, machine_info


def build(path: Path, rows: int, thumb_bytes: int, seed: int = 0) -> LanceStore:
    """The table of ``rows`` entries in 50,000-row writes, then its ANN and scalar indices."""
    store = LanceStore(path, DIM, list(MARKET_ATTRIBUTES), ann_min_rows=rows)
    rng = np.random.default_rng(seed)
    common = _unit(rng.normal(size=(1, DIM)))
    centres = _unit(SHARED * common + _unit(rng.normal(size=(rows // VIEWS + 1, DIM))))
    for start in range(0, rows, 50_000):
        cols, _ = make_rows(start, min(50_000, rows - start), centres, seed)
        cols["thumbnail"] = [rng.bytes(thumb_bytes) for _ in cols["id"]]
        store.table.add(arrow_rows(cols, store.schema))
    store._maybe_build_index()
    return store


def delete(store: LanceStore, ids: list[str]) -> None:
    """LanceDB's delete."""
    store.table.delete(f"id IN ({', '.join(_quote(i) for i in ids)})")


def delete_optimize(store: LanceStore, ids: list[str]) -> None:
    """LanceDB's delete, then optimize keeping no older version."""
    delete(store, ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        store.table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)


ARMS = {"delete": delete, "delete_optimize": delete_optimize,
        "forget": lambda store, ids: store.forget(ids)}


def still_on_disk(path: Path, needles: list[bytes]) -> int:
    """How many of ``needles`` some file under ``path`` holds."""
    blobs = [p.read_bytes() for p in path.rglob("*") if p.is_file()]
    return sum(any(n in b for b in blobs) for n in needles)


def one_call(master: Path, workdir: Path, arm: str, n_ids: int, seed: int) -> dict[str, Any]:
    copy = workdir / "copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(master, copy)
    store = LanceStore(copy, DIM, list(MARKET_ATTRIBUTES), ann_min_rows=10**9)
    store.ann_min_rows = store.count() // 2  # the ANN index is built again after forgetting
    listed = store.table.search().select(["id", "thumbnail"]).limit(None).to_arrow()
    pick = np.random.default_rng(seed).choice(listed.num_rows, n_ids, replace=False)
    ids = [listed["id"][int(i)].as_py() for i in pick]
    thumbs = [listed["thumbnail"][int(i)].as_py() for i in pick[:20]]
    start = time.perf_counter()
    ARMS[arm](store, ids)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows_left": store.count(),
            "thumbnails_on_disk": still_on_disk(copy, thumbs), "checked": len(thumbs),
            "ann_index": store._vector_index() is not None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--thumb-bytes", type=int, default=3000)
    ap.add_argument("--ids", default="1,1000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/forget.json"))
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_forget_"))
    t0 = time.perf_counter()
    build(workdir / "master", args.rows, args.thumb_bytes)
    result: dict[str, Any] = {"machine": machine_info(), "rows": args.rows,
                              "thumb_bytes": args.thumb_bytes, "build_s": time.perf_counter() - t0,
                              "arms": {}}
    print(f"{describe_machine(result['machine'])}; {args.rows} rows built in "
          f"{result['build_s']:.1f} s", flush=True)
    for n_ids in (int(v) for v in args.ids.split(",")):
        for arm in ARMS:
            calls = [one_call(workdir / "master", workdir, arm, n_ids, seed)
                     for seed in range(args.repeats)]
            median = statistics.median(c["seconds"] for c in calls)
            result["arms"][f"{arm}_{n_ids}"] = {"median_s": median, "calls": calls}
            print(f"{arm:15s} {n_ids:5d} ids: median {median:.2f} s; forgotten thumbnails still "
                  f"on disk: {calls[0]['thumbnails_on_disk']}/{calls[0]['checked']}; ANN index "
                  f"after: {calls[0]['ann_index']}", flush=True)
        for base in ("delete", "delete_optimize"):
            ratio = (result["arms"][f"forget_{n_ids}"]["median_s"]
                     / result["arms"][f"{base}_{n_ids}"]["median_s"])
            result["arms"][f"forget_{n_ids}"][f"ratio_to_{base}"] = ratio
            print(f"forget / {base} at {n_ids} ids: {ratio:.2f}x", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
