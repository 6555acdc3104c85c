"""Forgetting people (issue 37): an entry forgotten by id, camera or time leaves every file of
the index, on LanceDB and on Qdrant's local mode, checked on the bytes: the thumbnail's JPEG
bytes and the embedding's float32 bytes are found in the index folder before and nowhere after
(Qdrant keeps a point pickled in SQLite with its cosine vector normalised again, so its
vectors are checked through every row of its files instead)."""

from __future__ import annotations

import base64
import dataclasses
import pickle
import sqlite3
from datetime import datetime, timedelta

import numpy as np
import pytest
from index_utils import VOCAB, make_entries

from personkit.data.times import UTC, iso, parse_span
from personkit.index import IndexInfo, PeopleIndex
from personkit.index.forget import forget, retain

DIM = 16
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def people(source: str, n: int, seed: int, days_ago: list[float | None] | None = None) -> list:
    """``n`` entries with random JPEG-like thumbnails and, when given, last seen that many days
    before :data:`NOW` (None: no capture time)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, e in enumerate(make_entries(source, n, DIM, seed=seed)):
        seen = None if days_ago is None or days_ago[i] is None else iso(
            NOW - timedelta(days=days_ago[i]))
        out.append(dataclasses.replace(e, thumbnail=b"\xff\xd8\xff\xe0" + rng.bytes(400),
                                       first_seen=seen, last_seen=seen,
                                       time_source="start_time" if seen else ""))
    return out


def make_index(tmp_path, backend: str) -> PeopleIndex:
    extra = {"backend": "qdrant"} if backend == "qdrant" else {}
    return PeopleIndex.create_or_open(tmp_path / "idx", IndexInfo("m", DIM, VOCAB, None,
                                                                  extra=extra))


def files_holding(index: PeopleIndex, needle: bytes) -> list[str]:
    return [str(p.relative_to(index.path)) for p in index.path.rglob("*")
            if p.is_file() and needle in p.read_bytes()]


def stored_vectors(index: PeopleIndex) -> list[np.ndarray]:
    """Qdrant's local mode: the vector of every person's row of every SQLite file (the
    records collection's are 1-d; deleted rows' free pages: the byte scan of the
    thumbnails)."""
    out = []
    for db in index.path.rglob("storage.sqlite"):
        with sqlite3.connect(db) as conn:
            out += [v for (blob,) in conn.execute("SELECT point FROM points")
                    if (v := np.asarray(pickle.loads(blob).vector, np.float32)).size == DIM]
    return out


def assert_kept(index: PeopleIndex, entry) -> None:
    assert index.get(entry.id).thumbnail == entry.thumbnail
    hit = index.search(entry.embedding, k=1)["hits"][0]
    assert hit["id"] == entry.id and hit["distance"] == pytest.approx(0.0, abs=1e-5)


def assert_gone(index: PeopleIndex, entry) -> None:
    with pytest.raises(KeyError, match=entry.id):
        index.get(entry.id)
    assert not files_holding(index, entry.thumbnail)
    assert not files_holding(index, base64.b64encode(entry.thumbnail))
    assert not files_holding(index, np.asarray(entry.embedding, np.float32).tobytes())
    unit = entry.embedding / np.linalg.norm(entry.embedding)
    assert all(float(v @ unit) < 0.999 for v in stored_vectors(index))


@pytest.mark.parametrize("backend", ["lancedb", "qdrant"])
def test_forgotten_entries_leave_every_file_and_the_others_stay(tmp_path, backend):
    index = make_index(tmp_path, backend)
    cam1, cam2 = people("cam1", 12, 1, [1, 2, 9, 10, None] + [1] * 7), people("cam2", 6, 2)
    for i in range(0, 12, 4):  # several writes: several data files and table versions
        index.add("cam1", cam1[:i + 4])
    index.add("cam2", cam2)
    target = cam1[5]
    assert files_holding(index, target.thumbnail if backend == "lancedb"
                         else base64.b64encode(target.thumbnail))

    out = forget(index, [target.id])
    assert out["forgotten"] == [target.id] and out["entries"] == 17
    assert_gone(index, target)
    for e in (cam1[4], cam1[6], cam2[0]):
        assert_kept(index, e)

    out = forget(index, before=NOW - timedelta(days=5))  # cam1:3 and cam1:4 (9, 10 days)
    assert out["forgotten"] == ["cam1:3", "cam1:4"]
    assert out["undated"] == 6 + 1  # cam2 and cam1:5 have no time; they are kept
    for e in cam1[2:4]:
        assert_gone(index, e)
    assert_kept(index, cam1[0])

    out = forget(index, camera="cam2")
    assert out["forgotten"] == [e.id for e in cam2] and index.store.sources() == {"cam1": 9}
    for e in cam2:
        assert_gone(index, e)
    assert index.store.count() == 9 and index.store.recordings()[0]["entries"] == 9
    if backend == "lancedb":
        assert index.store.versions() == 1  # every older version is gone


@pytest.mark.parametrize("backend", ["lancedb", "qdrant"])
def test_a_selection_naming_nobody_known_deletes_nothing(tmp_path, backend):
    index = make_index(tmp_path, backend)
    index.add("cam1", people("cam1", 5, 3))
    versions = index.store.versions()
    with pytest.raises(ValueError, match="no entry 'cam1:99' in the people index"):
        forget(index, ["cam1:2", "cam1:99"])
    with pytest.raises(ValueError, match="unknown camera 'cam9'.* 1 camera\\(s\\): 'cam1'"):
        forget(index, camera="cam9")
    with pytest.raises(ValueError, match="say whom to forget"):
        forget(index)
    with pytest.raises(ValueError, match="not both at once"):
        forget(index, ["cam1:2"], camera="cam1")
    with pytest.raises(ValueError, match="--before 'yesterday' is not an ISO-8601 time"):
        forget(index, before="yesterday")
    assert index.store.count() == 5 and index.store.versions() == versions
    assert forget(index, camera="cam1", dry_run=True)["forgotten"] == [
        f"cam1:{i}" for i in range(1, 6)]
    assert index.store.count() == 5


def test_retention_forgets_what_was_last_seen_before_the_span(tmp_path):
    index = make_index(tmp_path, "lancedb")
    entries = people("cam1", 4, 4, [0.5, 3, 8, None])
    index.add("cam1", entries)
    out = retain(index, "7d", now=NOW)
    assert out["forgotten"] == ["cam1:3"] and out["undated"] == 1
    assert_gone(index, entries[2])
    assert retain(index, "2d", now=NOW)["forgotten"] == ["cam1:2"]
    for bad, why in (("0d", "keeps nothing"), ("-1d", "is not a span"), ("week", "is not a span")):
        with pytest.raises(ValueError, match=f"--retain '{bad}' {why}"):
            retain(index, bad)
    assert parse_span("1.5h", "--retain") == timedelta(minutes=90)


def test_an_approximate_index_is_built_again_without_the_forgotten_rows(tmp_path):
    from personkit.index.store import LanceStore

    store = LanceStore(tmp_path / "lance", DIM, list(VOCAB), ann_min_rows=300)
    entries = people("cam1", 320, 5)
    store.replace_source("cam1", entries)
    index_dir = tmp_path / "lance" / "people.lance" / "_indices"
    before = {p.relative_to(index_dir) for p in index_dir.rglob("*") if p.is_file()}
    assert store._vector_index() is not None and before
    store.forget([entries[7].id, entries[200].id])  # 2 of 320 rows: compaction alone keeps them
    for e in (entries[7], entries[200]):
        assert not [p for p in tmp_path.rglob("*") if p.is_file() and (
            e.thumbnail in p.read_bytes() or e.embedding.tobytes() in p.read_bytes())]
    after = {p.relative_to(index_dir) for p in index_dir.rglob("*") if p.is_file()}
    assert store._vector_index() is not None and not before & after  # every file is new
    assert store.count() == 318 and store.get(entries[7].id) is None
    hit = store.search(entries[8].embedding / np.linalg.norm(entries[8].embedding), {}, 1)[0]
    assert hit["id"] == entries[8].id
    store.forget([e.id for e in entries[:30]])  # below ann_min_rows: exact search, no index
    assert store._vector_index() is None and store.count() == 289  # cam1:8 was gone


def test_searches_running_while_people_are_forgotten_never_fail(tmp_path):
    """A forget deletes every older table version; a search that began on one reads again
    on the latest (without that, about 1 search in 100 failed with LanceDB's "Not found")."""
    import threading

    index = make_index(tmp_path, "lancedb")
    for c in range(6):
        index.add(f"cam{c}", make_entries(f"cam{c}", 60, DIM, seed=c))
    errors, done, stop = [], [0], threading.Event()

    def search() -> None:
        while not stop.is_set():
            try:
                index.search(np.ones(DIM, np.float32), k=5)
                index.search(where="gender=male", k=5)
                done[0] += 1
            except Exception as e:  # noqa: BLE001 - every failure is the finding
                errors.append(repr(e))

    reader = threading.Thread(target=search)
    reader.start()
    try:
        for c in range(6):
            forget(index, [f"cam{c}:{i}" for i in range(1, 4)])
    finally:
        stop.set()
        reader.join()
    assert not errors and done[0] > 0 and index.store.count() == 6 * 57


def test_a_live_track_forgotten_while_in_view_is_not_written_again(tmp_path):
    """``DELETE /people/{id}`` on a service with live cameras: the committer drops the
    track's queued writes and never writes its id again, so the person stays forgotten while
    the camera still tracks them."""
    from personkit.index.live import Committer

    index = make_index(tmp_path, "lancedb")
    first, second = people("cam1", 2, 6)
    committer = Committer(index, flush_seconds=0.05, compact_seconds=None)
    try:
        committer.put([first, second], ended=False)
        assert committer.flush()
        committer.forget([first.id])
        forget(index, [first.id])
        committer.put([first, dataclasses.replace(second, last_frame=99)], ended=False)
        assert committer.flush()
    finally:
        committer.close()
    assert [r["id"] for r in index.store.select({})] == [second.id]
    assert index.get(second.id).last_frame == 99 and not files_holding(index, first.thumbnail)
