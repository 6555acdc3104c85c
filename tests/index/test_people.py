"""The people index (personkit.index.people): one embedding space per index, writers that
wait for each other and lose nothing, a kill while indexing that leaves an index that opens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from index_utils import VOCAB, make_entries

from personkit.index import IndexInfo, PeopleIndex

DIM = 16
INFO = IndexInfo("model-a", DIM, VOCAB, {"threshold": 0.2})

#: A writer process: adds sources s0..sN-1 of 40 entries each, printing each after its commit.
WRITER = """
import sys
sys.path.insert(0, {tests!r})
from index_utils import VOCAB, make_entries
from personkit.index import IndexInfo, PeopleIndex
index = PeopleIndex.create_or_open({path!r}, IndexInfo("model-a", 16, VOCAB, {{"threshold": 0.2}}))
for i in range({first}, {last}):
    index.add(f"s{{i}}", make_entries(f"s{{i}}", 40, 16, seed=i))
    print(i, flush=True)
"""


def writer(path: Path, first: int, last: int) -> subprocess.Popen:
    code = WRITER.format(tests=str(Path(__file__).resolve().parent.parent), path=str(path),
                         first=first, last=last)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_create_open_search_and_refuse_another_model(tmp_path):
    index = PeopleIndex.create_or_open(tmp_path / "idx", INFO)
    with pytest.raises(ValueError, match="is empty: add people with `personkit index"):
        index.search(where="gender=male")
    entries = make_entries("cam1", 12, DIM)
    index.add("cam1", entries)
    again = PeopleIndex.open(tmp_path / "idx")
    out = again.search(entries[0].embedding, "backpack=yes", k=3)
    assert out["threshold"] == 0.2 and len(out["hits"]) <= 3
    assert all(h["attributes"]["backpack"]["label"] == "yes" for h in out["hits"])
    assert all(h["same_person"] == (h["distance"] <= 0.2) for h in out["hits"])
    first = again.search(entries[0].embedding, k=1, exclude=None)["hits"][0]
    assert first["id"] == "cam1:1" and first["distance"] == pytest.approx(0.0, abs=1e-6)
    assert again.search(entries[0].embedding, k=1, exclude="cam1:1")["hits"][0]["id"] != "cam1:1"
    other = IndexInfo("model-b", 32, VOCAB)
    with pytest.raises(ValueError, match="holds people of model model-a .* these come from "
                                         "model model-b"):
        PeopleIndex.create_or_open(tmp_path / "idx", other)
    with pytest.raises(ValueError, match="embedding has width 8, the index .* holds width 16"):
        again.search(np.ones(8))
    with pytest.raises(ValueError, match="entry c:1: embedding of shape"):
        again.add("c", make_entries("c", 1, 8))
    with pytest.raises(FileNotFoundError, match="no people index at"):
        PeopleIndex.open(tmp_path / "nothing")
    with pytest.raises(KeyError, match="no entry 'cam1:99'"):
        again.get("cam1:99")


def test_a_store_path_that_cannot_be_written_is_named(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match=f"cannot write a people index at {blocker}/idx"):
        PeopleIndex.create_or_open(blocker / "idx", INFO)


def test_concurrent_appends_and_searches_lose_nothing(tmp_path):
    path = tmp_path / "idx"
    PeopleIndex.create_or_open(path, INFO).add("seed", make_entries("seed", 5, DIM))
    procs = [writer(path, 0, 6), writer(path, 6, 12)]
    index, errors, searches = PeopleIndex.open(path), [], 0

    def add_in_thread(first: int) -> None:
        try:
            for i in range(first, first + 4):
                index.add(f"t{i}", make_entries(f"t{i}", 40, DIM, seed=100 + i))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=add_in_thread, args=(k,)) for k in (0, 4)]
    for t in threads:
        t.start()
    while any(p.poll() is None for p in procs) or any(t.is_alive() for t in threads):
        hits = index.search(np.ones(DIM), "gender=female", k=5)["hits"]  # never waits
        assert all(h["attributes"]["gender"]["label"] == "female" for h in hits)
        searches += 1
    assert [p.returncode for p in procs] == [0, 0] and not errors and searches > 0
    sources = PeopleIndex.open(path).store.sources()
    assert sources == {"seed": 5, **{f"s{i}": 40 for i in range(12)},
                       **{f"t{i}": 40 for i in range(8)}}


def test_a_killed_indexer_leaves_an_index_that_opens_and_a_rerun_completes_it(tmp_path):
    path = tmp_path / "idx"
    proc = writer(path, 0, 60)
    done = [proc.stdout.readline() for _ in range(3)]  # three sources committed
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [int(x) for x in done] == [0, 1, 2]
    index = PeopleIndex.open(path)
    partial = index.store.sources()
    assert {f"s{i}" for i in range(3)} <= set(partial) and all(n == 40 for n in partial.values())
    assert index.search(np.ones(DIM), k=3)["hits"]
    rerun = writer(path, 0, 60)
    assert rerun.wait(timeout=600) == 0
    assert PeopleIndex.open(path).store.sources() == {f"s{i}": 40 for i in range(60)}


@pytest.mark.parametrize("backend", ["lancedb", "qdrant"])
def test_errors_are_typed_and_a_search_counts_only_when_it_finds_nobody(tmp_path, monkeypatch,
                                                                        backend):
    from personkit.index.entries import EmptyIndexError, ExampleError, FilterError

    if backend == "qdrant":
        pytest.importorskip("qdrant_client", reason="the index extra is not installed")
    info = IndexInfo("model-a", DIM, VOCAB, {"threshold": 0.2}, extra={"backend": backend})
    index = PeopleIndex.create_or_open(tmp_path / "idx", info)
    with pytest.raises(EmptyIndexError, match="is empty"):
        index.search(np.ones(DIM))
    index.add("cam 1", make_entries("cam 1", 12, DIM))
    counted = []
    count = index.store.count
    monkeypatch.setattr(index.store, "count", lambda: counted.append(1) or count())
    hits = index.search(np.ones(DIM), 'source="cam 1"', k=3)["hits"]
    assert len(hits) == 3 and not counted  # found people: no count
    assert index.search(where='source="cam 1" backpack>=1')["hits"] == [] and counted
    with pytest.raises(FilterError, match=r"unknown camera source='other' in the filter: the "
                                          r"people index .* has 1 camera\(s\): 'cam 1'$"):
        index.search(np.ones(DIM), "source=other gender=male")
    index.add("cam2", make_entries("cam2", 2, DIM))
    with pytest.raises(FilterError, match="has 2 camera\\(s\\): 'cam 1', 'cam2'"):
        index.search(where="source=Cam2")  # names are exact
    monkeypatch.setattr("personkit.index.people.MAX_LISTED", 1)
    with pytest.raises(FilterError, match="has 2 camera\\(s\\): 'cam 1' and 1 more$"):
        index.search(where="source=cam3")
    for bad, error in ((dict(where="gender=male gender=female"), FilterError),
                       (dict(where="hat=yes"), FilterError),
                       (dict(example=np.ones(8)), ExampleError)):
        with pytest.raises(error):
            index.search(**bad)
