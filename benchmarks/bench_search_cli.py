"""``personkit search`` as a user runs it: the wall time of one command, interpreter start to
exit, on an index of ``--n`` entries (issue 35: every search paid for torch and timm first).

The index is built once in a temporary folder through ``PeopleIndex.add`` (the path
``personkit index`` takes): ``--n`` entries of random unit embeddings of the demo model's
width (512) over ``--cameras`` cameras, the twelve Market-1501 attributes at random, a
4,000-byte thumbnail each (about what ``personkit track`` keeps). Below ``ANN_MIN_ROWS`` the
store searches exactly, as a 10,000-entry index does.

Each case runs ``python -m personkit search INDEX ...`` (what the ``personkit`` script runs)
as a subprocess ``--repeats`` times after one warm-up run (the files in the page cache); the
median, minimum and maximum wall times are reported, each case's exit status checked:

* ``attributes``: ``--where "gender=female backpack=yes"``;
* ``entry``: ``--example SOURCE:TRACK`` (the nearest people to an entry of the index);
* ``bad_path``: the index path misspelled (exit 2, one line);
* ``unknown_camera``: ``--where source=NAME`` naming no camera of the index (exit 2).

Baselines measured in the same run, the same way: ``python -c pass`` (the interpreter's start)
and ``python -c "import torch"`` (what every search paid before any work until issue 35);
``python -c "import lancedb"`` (the embedded store's import, the floor of a search of a
LanceDB index). With ``--before REV`` the same cases also run on the package as it was at git
revision ``REV`` (``git archive`` into the temporary folder, put first on ``PYTHONPATH``).

Usage::

    python benchmarks/bench_search_cli.py [--n 10000] [--cameras 20] [--repeats 7]
        [--before REV] [--workdir /tmp/x] [--out benchmarks/results/search_cli.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from personkit.data.constants import MARKET_ATTRIBUTES
from personkit.index.entries import Entry, IndexInfo
from personkit.index.people import PeopleIndex
from personkit.runtime import describe_machine, machine_info

DIM, THUMB_BYTES = 512, 4000
REPO = Path(__file__).resolve().parent.parent


def build_index(path: Path, n: int, cameras: int, seed: int) -> str:
    """``n`` random entries over ``cameras`` cameras at ``path``; returns one entry's id."""
    vocab = {a: list(v) for a, v in MARKET_ATTRIBUTES.items()}
    index = PeopleIndex.create_or_open(path, IndexInfo("bench-random", DIM, vocab,
                                                       calibration={"threshold": 0.3}))
    rng = np.random.default_rng(seed)
    per = -(-n // cameras)
    for c in range(cameras):
        m = min(per, n - c * per)
        emb = rng.normal(size=(m, DIM)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        entries = []
        for i in range(m):
            attrs = {}
            for a, labels in vocab.items():
                k, conf = int(rng.integers(len(labels))), float(rng.uniform(0.5, 1))
                attrs[a] = (labels[k], conf, None if len(labels) != 2 else
                            conf if k == 1 else 1 - conf)
            entries.append(Entry(f"cam{c}", i + 1, emb[i], attrs, rng.bytes(THUMB_BYTES),
                                 first_frame=i + 1, last_frame=i + 40, first_time=i / 25,
                                 last_time=(i + 39) / 25))
        index.add(f"cam{c}", entries)
    assert index.store.count() == n, index.store.count()
    return f"cam{cameras // 2}:{per // 2}"


def wall(cmd: list[str], env: dict[str, str], expect: int | None, repeats: int,
         cwd: Path) -> dict:
    """Median, min and max seconds of ``cmd`` run in ``cwd`` (not the repository, whose
    ``personkit`` folder ``python -m`` would find first) over ``repeats`` runs after one
    warm-up, its exit status checked against ``expect`` (None: only recorded)."""
    times, last = [], None
    for i in range(repeats + 1):
        start = time.perf_counter()
        last = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                              check=False)
        if i:
            times.append(time.perf_counter() - start)
        if expect is not None and last.returncode != expect:
            raise SystemExit(f"{cmd} exited {last.returncode}, expected {expect}:\n"
                             f"{last.stderr[-2000:]}")
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "runs": len(times), "exit": last.returncode,
            "stderr": last.stderr.strip().splitlines()[-1] if last.stderr.strip() else "",
            "stdout_lines": len(last.stdout.splitlines())}


def cases(entry: str) -> dict[str, tuple[list[str], int]]:
    """Each case's ``personkit search`` arguments and its expected exit status."""
    return {"attributes": (["--where", "gender=female backpack=yes"], 0),
            "entry": (["--example", entry], 0),
            "bad_path": (["--where", "gender=female"], 2),
            "unknown_camera": (["--where", "source=no-such-camera"], 2)}


def run_cases(index: Path, entry: str, env: dict[str, str], repeats: int,
              check: bool = True) -> dict:
    """Every case timed (exit statuses checked unless ``check`` is False: an older package
    may answer a case otherwise)."""
    out = {}
    for name, (extra, expect) in cases(entry).items():
        path = f"{index}-misspelled" if name == "bad_path" else str(index)
        cmd = [sys.executable, "-m", "personkit", "search", path, *extra]
        out[name] = wall(cmd, env, expect if check else None, repeats, index.parent)
        print(name, json.dumps(out[name]), flush=True)
    return out


def old_package(rev: str, workdir: Path) -> Path:
    """The ``personkit`` package at git revision ``rev``, unpacked under ``workdir``."""
    dest = workdir / f"rev-{rev}"
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "personkit"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--cameras", type=int, default=20)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--before", default=None, help="also time the package at this git rev")
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default="benchmarks/results/search_cli.json")
    args = p.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_search_cli_"))
    index = workdir / "people"
    start = time.perf_counter()
    entry = build_index(index, args.n, args.cameras, args.seed)
    result: dict = {"n": args.n, "cameras": args.cameras, "entry": entry,
                    "build_s": round(time.perf_counter() - start, 1), "repeats": args.repeats}
    env = dict(os.environ)
    base = {"python_pass": "pass", "import_torch": "import torch",
            "import_lancedb": "import lancedb"}
    result["baselines"] = {k: wall([sys.executable, "-c", code], env, 0, args.repeats, workdir)
                           for k, code in base.items()}
    print("baselines", json.dumps(result["baselines"]), flush=True)
    result["search"] = run_cases(index, entry, env, args.repeats)
    if args.before:
        old_env = {**env, "PYTHONPATH": str(old_package(args.before, workdir))}
        result["before"] = {"rev": args.before,
                            "search": run_cases(index, entry, old_env, args.repeats, False)}
    medians = {k: v["median_s"] for k, v in result["search"].items()}
    torch_s = result["baselines"]["import_torch"]["median_s"]
    lancedb_s = result["baselines"]["import_lancedb"]["median_s"]
    result["vs_import_torch"] = {k: round(v / torch_s, 2) for k, v in medians.items()}
    result["beyond_import_lancedb_s"] = {k: round(v - lancedb_s, 3) for k, v in medians.items()}
    if args.before:
        result["speedup_vs_before"] = {
            k: round(result["before"]["search"][k]["median_s"] / v, 1) for k, v in medians.items()}
    result["machine"] = describe_machine(machine_info())
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
