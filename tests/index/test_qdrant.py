"""The Qdrant store's replace in generations (a kill between its steps leaves the old content,
removed on the next open), one collection per index made for one model, and a local folder
another client holds refused in one line (qdrant-client's local mode, in tmp_path)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from index_utils import VOCAB, make_entries

pytest.importorskip("qdrant_client", reason="the index extra is not installed")

from personkit.index import IndexInfo, PeopleIndex  # noqa: E402
from personkit.index.qdrant import QdrantStore, StoreBusyError, point_id  # noqa: E402

DIM = 16


def open_store(path, **kwargs) -> QdrantStore:
    return QdrantStore(DIM, list(VOCAB), path=path / "q", **kwargs)


def points(store: QdrantStore) -> int:
    """Every point of the collection, current or not."""
    return store.client.count(store.collection, exact=True).count


def readers_see(store: QdrantStore, entries: list) -> None:
    """Every reader of ``store`` sees exactly ``entries`` (sources a and b)."""
    ids = sorted(e.id for e in entries)
    assert store.count() == len(entries)
    assert store.sources() == {s: sum(e.source == s for e in entries) for s in ("a", "b")}
    assert sorted(h["id"] for h in store.search(None, {}, 100)) == ids
    assert sorted(h["id"] for h in store.search(np.ones(DIM), {}, 100)) == ids
    assert sorted(m["id"] for m in store.vectors()[0]) == ids
    for e in entries:
        got = store.get(e.id)
        assert got is not None and np.allclose(got.embedding, e.embedding, atol=1e-6)


@pytest.mark.parametrize("step", ["_flip", "_drop_old"])
def test_a_replace_killed_between_its_steps_leaves_one_whole_content(tmp_path, monkeypatch,
                                                                     step):
    store = open_store(tmp_path)
    old = make_entries("a", 5, DIM)
    b = make_entries("b", 4, DIM)
    store.replace_source("a", old)
    store.replace_source("b", b)
    new = make_entries("a", 3, DIM, seed=7)

    def killed(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(store, step, killed)
    with pytest.raises(RuntimeError, match="killed"):
        store.replace_source("a", new)
    # killed before the flip: the old generation is current; after it: the new one is
    readers_see(store, (old if step == "_flip" else new) + b)
    assert points(store) == 5 + 4 + 3  # both generations of a are still there
    store.close()
    store = open_store(tmp_path)  # open: the generation that is not current goes
    readers_see(store, (old if step == "_flip" else new) + b)
    assert points(store) == store.count()
    store.replace_source("a", new)  # the rerun completes
    readers_see(store, new + b)
    assert points(store) == 3 + 4 and store.get("a:4") is None
    store.close()


def test_a_write_removes_what_an_earlier_killed_write_of_its_source_left(tmp_path,
                                                                        monkeypatch):
    store = open_store(tmp_path)
    store.replace_source("a", make_entries("a", 5, DIM))
    monkeypatch.setattr(store, "_flip", lambda *a: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        store.replace_source("a", make_entries("a", 6, DIM, seed=3))
    monkeypatch.undo()
    store.replace_source("a", make_entries("a", 2, DIM, seed=4))  # no reopen in between
    assert points(store) == store.count() == 2
    store.replace_source("a", [])
    assert points(store) == store.count() == 0 and store.sources() == {}
    store.close()


def test_one_collection_per_index_made_for_one_model(tmp_path):
    path = tmp_path / "store"
    one = open_store(path, collection="one", model="model-a")
    one.replace_source("a", make_entries("a", 5, DIM))
    one.close()
    two = open_store(path, collection="two", model="model-b")  # the same folder, apart
    two.replace_source("b", make_entries("b", 3, DIM))
    assert two.sources() == {"b": 3}
    two.close()
    one = open_store(path, collection="one", model="model-a")
    assert one.sources() == {"a": 5}
    one.close()
    with pytest.raises(ValueError, match="collection one holds people of model model-a "
                                         r"\(embedding width 16\), this index is for model "
                                         r"model-b \(width 16\)"):
        open_store(path, collection="one", model="model-b")
    with pytest.raises(ValueError, match=r"model model-a \(embedding width 16\), this index "
                                         r"is for model model-a \(width 8\)"):
        QdrantStore(8, list(VOCAB), path=path / "q", collection="one", model="model-a")


def test_a_new_qdrant_index_names_its_collection_and_an_old_one_keeps_people(tmp_path):
    info = IndexInfo("model-a", DIM, VOCAB, extra={"backend": "qdrant"})
    names = []
    for name in ("i1", "i2"):
        index = PeopleIndex.create_or_open(tmp_path / name, info)
        saved = json.loads((tmp_path / name / "index.json").read_text())
        assert saved["qdrant_collection"] == index.store.collection
        names.append(index.store.collection)
        index.store.close()
    assert names[0] != names[1] and all(n.startswith("personkit_") for n in names)
    assert "qdrant_collection" not in info.extra  # the caller's info is left alone

    # an index made before: points without a generation in the collection `people`
    old = tmp_path / "old"
    old.mkdir()
    (old / "index.json").write_text(json.dumps(info.to_dict()))
    raw = QdrantStore(DIM, list(VOCAB), path=old / "qdrant", collection="people")
    m = raw.m
    entries = make_entries("cam", 6, DIM)
    legacy = []
    for e in entries:
        p = raw._point(e, "x")
        p.payload.pop("generation")
        legacy.append(m.PointStruct(id=point_id(e.id), vector=p.vector, payload=p.payload))
    raw.client.delete_collection(raw.records)
    raw.client.upsert(raw.collection, legacy, wait=True)
    raw.close()
    index = PeopleIndex.open(old)
    assert index.store.collection == "people" and index.summary()["sources"] == {"cam": 6}
    assert index.search(where="source=cam", k=3)["hits"][0]["id"] == "cam:1"
    assert index.get("cam:2").thumbnail == entries[1].thumbnail
    index.add("cam", make_entries("cam", 2, DIM, seed=1))
    assert index.store.sources() == {"cam": 2} and points(index.store) == 2
    index.store.close()


def test_a_local_folder_another_client_holds_is_one_line_naming_the_index(tmp_path):
    first = open_store(tmp_path)
    with pytest.raises(StoreBusyError, match="is open in another process"):
        open_store(tmp_path)
    first.close()
    info = IndexInfo("model-a", DIM, VOCAB, extra={"backend": "qdrant"})
    held = PeopleIndex.create_or_open(tmp_path / "idx", info)
    with pytest.raises(ValueError) as caught:
        PeopleIndex.open(tmp_path / "idx")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(
        f"the people index {tmp_path / 'idx'} is open in another process (for example "
        f"`personkit serve`)")
    held.store.close()
    PeopleIndex.open(tmp_path / "idx").store.close()  # free again once it is closed
