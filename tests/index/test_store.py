"""The vector stores behind the people index: LanceDB (embedded default) and Qdrant (local
mode here; the same client talks to a server), against exact search in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from index_utils import VOCAB, make_entries

DIM = 16


def open_store(kind: str, path, **kwargs):
    if kind == "qdrant":
        pytest.importorskip("qdrant_client", reason="the index extra is not installed")
        from personkit.index.qdrant import QdrantStore

        return QdrantStore(DIM, list(VOCAB), path=path / "q")
    from personkit.index.store import LanceStore

    return LanceStore(path / "l", DIM, list(VOCAB), **kwargs)


def exact(entries, query, where, k):
    """Ids of the k nearest entries passing ``where`` (cosine distance, float64)."""
    ok = [e for e in entries if all((e.source if a == "source" else e.attributes[a][0]) == v
                                    for a, v in where.items())]
    dist = [1.0 - float(np.dot(e.embedding.astype(np.float64), query)) for e in ok]
    order = np.argsort(dist, kind="stable")[:k]
    return [ok[i].id for i in order], [dist[i] for i in order]


@pytest.fixture(params=["lancedb", "qdrant"])
def kind(request):
    return request.param


def test_replace_source_keeps_one_copy_and_replaces(kind, tmp_path):
    store = open_store(kind, tmp_path)
    store.replace_source("a", make_entries("a", 5, DIM))
    store.replace_source("b", make_entries("b", 4, DIM))
    store.replace_source("a", make_entries("a", 3, DIM, seed=1))  # re-indexed: 3 now
    assert store.count() == 7 and store.sources() == {"a": 3, "b": 4}
    again = make_entries("b", 4, DIM)
    store.replace_source("b", again)  # the same content again: no duplicates
    assert store.count() == 7
    got = store.get("b:2")
    assert got.thumbnail == again[1].thumbnail
    assert np.array_equal(got.embedding, again[1].embedding)  # float32 in, float32 out
    for name, (label, prob, positive) in again[1].attributes.items():  # stored as float32
        assert got.attributes[name][0] == label
        assert got.attributes[name][1] == pytest.approx(prob, rel=2**-24)
        assert got.attributes[name][2] == (None if positive is None else pytest.approx(
            positive, rel=2**-24))
    assert got.identity == again[1].identity and got.last_time == again[1].last_time
    assert store.get("a:4") is None  # gone with the re-index
    store.replace_source("b", [])
    assert store.sources() == {"a": 3}


def test_search_is_exact_and_filters_while_searching(kind, tmp_path):
    store = open_store(kind, tmp_path)
    entries = make_entries("a", 60, DIM) + make_entries("b", 40, DIM)
    for s in ("a", "b"):
        store.replace_source(s, [e for e in entries if e.source == s])
    q = np.random.default_rng(5).normal(size=DIM)
    q /= np.linalg.norm(q)
    for where in ({}, {"gender": "female"}, {"upcolor": "red", "backpack": "yes"},
                  {"source": "b", "gender": "male"}):
        hits = store.search(q.astype(np.float32), where, 5)
        ids, dist = exact(entries, q, where, 5)
        assert [h["id"] for h in hits] == ids  # pre-filtering: k passing rows, never fewer
        # float32 storage and arithmetic: |d - d64| <= (D + 2) * 2^-24 * |e| |q| (unit vectors)
        assert [h["distance"] for h in hits] == pytest.approx(dist, abs=(DIM + 2) * 2**-24 + 1e-6)
        assert all(h["attributes"][a]["label"] == v for h in hits for a, v in where.items()
                   if a != "source")


def test_filter_only_search_and_vectors(kind, tmp_path):
    store = open_store(kind, tmp_path)
    entries = make_entries("a", 20, DIM)
    store.replace_source("a", entries)
    hits = store.search(None, {"gender": "female"}, 100)
    assert {h["id"] for h in hits} == {e.id for e in entries if e.attributes["gender"][0] ==
                                       "female"} and all(h["distance"] is None for h in hits)
    meta, emb = store.vectors()
    assert [m["id"] for m in meta] == sorted(e.id for e in entries) and emb.shape == (20, DIM)


def test_ann_index_above_the_size_keeps_filtered_search_exact(tmp_path):
    """Above ``ann_min_rows`` the embedded store builds IVF-HNSW-SQ: a selective filter is
    still searched exactly; unfiltered recall@10 on clustered data is high."""
    from personkit.index.store import LanceStore

    store = LanceStore(tmp_path / "l", DIM, list(VOCAB), ann_min_rows=300)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, DIM))
    entries = make_entries("a", 400, DIM)
    for i, e in enumerate(entries):  # 40 people, 10 views each
        v = centres[i % 40] + 0.3 * rng.normal(size=DIM)
        e.embedding = (v / np.linalg.norm(v)).astype(np.float32)
    store.replace_source("a", entries)
    assert "vector" in {i.columns[0] for i in store.table.list_indices()}
    recalls = []
    for c in centres[:10]:
        q = c / np.linalg.norm(c)
        where = {"upcolor": "blue"}
        assert [h["id"] for h in store.search(q, where, 5)] == exact(entries, q, where, 5)[0]
        got = {h["id"] for h in store.search(q, {}, 10)}
        recalls.append(len(got & set(exact(entries, q, {}, 10)[0])) / 10)
    assert np.mean(recalls) >= 0.9


def ann_store(tmp_path, n: int = 400, **kwargs):
    """A LanceDB store over ``n`` clustered entries of source ``a`` with its ANN index built
    (``ann_min_rows`` 300), and the entries."""
    from personkit.index.store import LanceStore

    store = LanceStore(tmp_path / "l", DIM, list(VOCAB), ann_min_rows=300, **kwargs)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, DIM))
    entries = make_entries("a", n, DIM)
    for i, e in enumerate(entries):  # 40 people, n / 40 views each
        v = centres[i % 40] + 0.3 * rng.normal(size=DIM)
        e.embedding = (v / np.linalg.norm(v)).astype(np.float32)
    store.replace_source("a", entries)
    assert store._vector_index() is not None
    return store, entries


def test_k_beyond_the_hnsw_beam_on_every_ann_path(tmp_path, monkeypatch):
    """k above ``HNSW_EF`` (the widest page asks 100, with an entry example 101): the beam is
    raised to k where it is set, and a selective filter keeps LanceDB's (1.5 k)."""
    from personkit.index import store as store_mod

    store, entries = ann_store(tmp_path)
    monkeypatch.setattr(store_mod, "EXACT_FILTERED_MAX", 10)  # filters go through the ANN too
    q = entries[0].embedding
    for where in ({}, {"gender": "female"}, {"upcolor": "red", "backpack": "yes"}):
        passing = len(exact(entries, q, where, 10**6)[0])
        for k in (store_mod.HNSW_EF + 1, 150, 1000):
            hits = store.search(q, where, k)
            assert len(hits) == min(k, passing), (where, k)
            assert all(h["attributes"][a]["label"] == v for h in hits for a, v in where.items())
            dist = [h["distance"] for h in hits]
            assert dist == sorted(dist) and (where or hits[0]["id"] == entries[0].id)


def insert_unsorted(store):
    """Sources written out of order, frames not following track ids (two tracks share a first
    frame): the order is the data's, not the storage's. Returns every entry."""
    entries = []
    for source, n in (("zeta", 7), ("alpha", 9), ("mid", 6)):
        part = make_entries(source, n, DIM, seed=len(source))
        for i, e in enumerate(part):
            e.first_frame = 100 - 10 * i if source != "mid" else 5 + (i // 2)
        store.replace_source(source, part)
        entries += part
    return entries


def test_filter_only_search_is_the_first_k_by_source_frame_and_track(tmp_path):
    stores = [open_store("lancedb", tmp_path), open_store("qdrant", tmp_path)]
    entries = insert_unsorted(stores[0])
    insert_unsorted(stores[1])
    for where in ({}, {"gender": "male"}, {"source": "mid"}):
        ok = sorted((e for e in entries if all(
            (e.source if a == "source" else e.attributes[a][0]) == v for a, v in where.items())),
            key=lambda e: (e.source, e.first_frame, e.track_id, e.id))
        for k in (4, 100):
            got = [[h["id"] for h in s.search(None, where, k)] for s in stores]
            assert got[0] == got[1] == [e.id for e in ok[:k]], (where, k)
    assert len(ok) > 4  # more matches than k
    stores[1].close()


def test_sources_named_with_spaces_and_commas_are_filtered(kind, tmp_path):
    from personkit.index.entries import parse_where

    store = open_store(kind, tmp_path)
    for source in ("cam 1", "a,b", "it's", "plain"):
        store.replace_source(source, make_entries(source, 3, DIM))
    for text, source in (('source="cam 1"', "cam 1"), ("source='a,b'", "a,b"),
                         ('source="it\'s"', "it's")):
        hits = store.search(None, parse_where(text, VOCAB), 10)
        assert [h["id"] for h in hits] == [f"{source}:{i}" for i in (1, 2, 3)]
        q = np.ones(DIM, np.float32) / np.sqrt(DIM)
        assert {h["source"] for h in store.search(q, parse_where(text, VOCAB), 10)} == {source}


def test_writes_after_the_ann_index_are_folded_in_and_old_versions_go(tmp_path, monkeypatch):
    """A write leaving ``optimize_min_rows`` rows outside the ANN index optimizes: they join
    the index, old versions older than ``CLEANUP_AGE`` go, a reader opened before keeps
    reading; a smaller write does not."""
    from datetime import timedelta

    from personkit.index import store as store_mod
    from personkit.index.store import LanceStore

    store, entries = ann_store(tmp_path, optimize_min_rows=50)
    reader = LanceStore(tmp_path / "l", DIM, list(VOCAB), ann_min_rows=300)
    assert reader.search(entries[0].embedding, {}, 1)[0]["id"] == "a:1"
    store.replace_source("b", make_entries("b", 20, DIM))
    assert store.unindexed_rows() == 20  # under the threshold: searched flat for now
    versions = len(store.table.list_versions())
    monkeypatch.setattr(store_mod, "CLEANUP_AGE", timedelta(0))  # every old version may go
    with pytest.warns(UserWarning, match="removes every version except the latest"):
        store.replace_source("c", make_entries("c", 40, DIM))  # 60 outside the index
    assert store.unindexed_rows() == 0
    assert len(store.table.list_versions()) < versions
    every = entries + make_entries("b", 20, DIM) + make_entries("c", 40, DIM)
    for s in (store, reader):
        assert s.count() == 460 and s.sources() == {"a": 400, "b": 20, "c": 40}
        hits = s.search(every[410].embedding, {"source": "b"}, 3)
        assert [h["id"] for h in hits] == exact(every, every[410].embedding, {"source": "b"},
                                                3)[0]
    never, _ = ann_store(tmp_path / "never", optimize_min_rows=None)
    never.replace_source("c", make_entries("c", 60, DIM))
    assert never.unindexed_rows() == 60


def test_probability_filters_read_the_positive_probability(kind, tmp_path):
    """``backpack>=0.6`` passes exactly the entries whose probability of a backpack is at
    least 0.6, on both stores, with and without an example; results show it as
    ``positive``."""
    store = open_store(kind, tmp_path)
    entries = make_entries("a", 40, DIM) + make_entries("b", 30, DIM, seed=1)
    store.replace_source("a", entries[:40])
    store.replace_source("b", entries[40:])
    want = sorted(e.id for e in entries if e.attributes["backpack"][2] >= 0.6
                  and e.attributes["gender"][0] == "female")
    where = {"backpack": (">=", 0.6), "gender": "female"}
    got = store.search(None, where, 100)
    assert sorted(h["id"] for h in got) == want and want
    assert all(h["attributes"]["backpack"]["positive"] >= 0.6 for h in got)
    assert "positive" not in got[0]["attributes"]["upcolor"]
    query = entries[3].embedding
    near = store.search(query, {"backpack": ("<", 0.6)}, 5)
    ids, _ = exact(entries, query, {}, 100)
    allowed = [i for i in ids if next(e for e in entries if e.id == i).attributes[
        "backpack"][2] < 0.6]
    assert [h["id"] for h in near] == allowed[:5]


def test_an_index_made_before_probabilities_answers_labels_and_explains(tmp_path):
    """A LanceDB table written before the ``prob_`` columns existed keeps working: labels
    filter as before, a probability filter is a FilterError saying to index again."""
    from personkit.index.entries import FilterError

    store = open_store("lancedb", tmp_path)
    store.replace_source("a", make_entries("a", 6, DIM))
    store.table.drop_columns([f"prob_{a}" for a in VOCAB])  # as an older personkit wrote it
    old = open_store("lancedb", tmp_path)
    assert len(old.search(None, {"gender": "male"}, 10)) == sum(
        e.attributes["gender"][0] == "male" for e in make_entries("a", 6, DIM))
    old.replace_source("b", make_entries("b", 3, DIM))  # writes keep the old schema
    assert old.count() == 9
    with pytest.raises(FilterError, match="made before it kept probabilities.*backpack>=0.5"):
        old.search(None, {"backpack": (">=", 0.5)}, 10)
