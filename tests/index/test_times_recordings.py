"""Capture times and recordings in the people index (issue #36, items 2-4), on both stores:
entries carry ISO-8601 UTC ``first_seen``/``last_seen``, searches filter by a time range (an
entry without times passes none) and order filter-only results newest first; a camera holds
several recordings (the same one written again replaces itself, another adds); an index made
before any of this keeps working."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from index_utils import VOCAB, make_entries

from personkit.data.times import iso, iso_from_us, parse_time, time_range, us_from_iso
from personkit.index.entries import FilterError
from personkit.index.store import ADDED_COLUMNS

DIM = 16
NOW = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def open_store(kind: str, path):
    if kind == "qdrant":
        pytest.importorskip("qdrant_client", reason="the index extra is not installed")
        from personkit.index.qdrant import QdrantStore

        return QdrantStore(DIM, list(VOCAB), path=path / "q")
    from personkit.index.store import LanceStore

    return LanceStore(path / "l", DIM, list(VOCAB))


@pytest.fixture(params=["lancedb", "qdrant"])
def kind(request):
    return request.param


def timed(source: str, n: int, untimed: int = 0, recording: str = "", **kw) -> list:
    """``n`` entries of ``source``'s ``recording``, entry i seen from 14:00 + 7 j min for
    2 min (j = i * 7 % n: out of id order), and ``untimed`` more without times."""
    out = [dataclasses.replace(e, recording=recording)
           for e in make_entries(source, n + untimed, DIM, **kw)]
    for i, e in enumerate(out[:n]):
        start = datetime(2026, 1, 5, 14, tzinfo=UTC) + timedelta(minutes=7 * (i * 7 % n))
        e.first_seen, e.last_seen = iso(start), iso(start + timedelta(minutes=2))
        e.time_source = "start_time"
    return out


def test_typed_times():
    assert parse_time("2026-01-05T14:00Z") == datetime(2026, 1, 5, 14, tzinfo=UTC)
    assert parse_time("2026-01-05 15:00:00+01:00") == datetime(2026, 1, 5, 14, tzinfo=UTC)
    assert parse_time("2026-01-05T14:00") == datetime(2026, 1, 5, 14, tzinfo=UTC)  # UTC
    assert parse_time("2h", now=NOW) == datetime(2026, 1, 5, 13, tzinfo=UTC)
    assert parse_time("30m", now=NOW) == datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    assert parse_time("7d", now=NOW) == datetime(2025, 12, 29, 15, tzinfo=UTC)
    assert time_range("2h", None, now=NOW) == ("2026-01-05T13:00:00.000000Z", None)
    with pytest.raises(ValueError, match="--since 'soon' is not an ISO-8601 time"):
        time_range("soon", None)
    with pytest.raises(ValueError, match=r"--since 1h \(2026-01-05T14:00:00.000000Z\) is after "
                                         r"--until 2h"):
        time_range("1h", "2h", now=NOW)
    with pytest.raises(ValueError, match="--start-time '2h' is not an ISO-8601 time"):
        parse_time("2h", "--start-time", relative=False)  # no span for a start
    us = us_from_iso("2026-01-05T14:00:02.080000Z")
    assert us == 1767621602080000 and iso_from_us(us) == "2026-01-05T14:00:02.080000Z"


def test_times_filter_and_newest_first(kind, tmp_path):
    """Both stores: hits show ISO times (None when unknown); since/until keep entries whose
    span overlaps the range; filter-only hits are newest first (untimed ones last, by the old
    order), the first k of more matches than k."""
    store = open_store(kind, tmp_path)
    entries = timed("a", 9, untimed=3) + timed("b", 5, seed=1)
    store.replace_source("a", entries[:12])
    store.replace_source("b", entries[12:])
    newest = sorted(sorted((e for e in entries if e.last_seen), key=lambda e: (
        e.source, e.first_frame, e.track_id, e.id)), key=lambda e: e.last_seen, reverse=True)
    untimed = [e.id for e in entries if not e.last_seen]
    for k in (4, 100):
        got = [h["id"] for h in store.search(None, {}, k)]
        assert got == ([e.id for e in newest] + untimed)[:k]
    hit = store.search(None, {"source": "b"}, 1)[0]
    e = next(x for x in entries if x.id == hit["id"])
    assert (hit["first_seen"], hit["last_seen"], hit["time_source"]) == (
        e.first_seen, e.last_seen, "start_time")
    assert (hit["camera"], hit["recording"]) == ("b", "b")
    where = {"since": "2026-01-05T14:20:00Z", "until": "2026-01-05T14:36:00Z"}
    want = {e.id for e in entries if e.last_seen and e.last_seen >= "2026-01-05T14:20"
            and e.first_seen <= "2026-01-05T14:36"}
    assert {h["id"] for h in store.search(None, where, 100)} == want and len(want) > 2
    q = entries[0].embedding
    near = store.search(q, {**where, "gender": "male"}, 100)
    assert {h["id"] for h in near} == {i for i in want if next(
        e for e in entries if e.id == i).attributes["gender"][0] == "male"}
    assert all(h["first_seen"] for h in near)
    untimed_hit = store.search(entries[10].embedding, {"source": "a"}, 1)[0]
    assert untimed_hit["id"] == entries[10].id and untimed_hit["first_seen"] is None
    assert store.get(entries[1].id).last_seen == entries[1].last_seen


def test_time_filters_on_the_ann_path(tmp_path):
    """Past ``ann_min_rows`` (ANN index, B-trees on the times) a time filter passes the same
    entries, with and without an example, and the filter-only order is the same."""
    from personkit.index.store import LanceStore

    entries = timed("a", 40, untimed=5)
    flat, ann = (LanceStore(tmp_path / n, DIM, list(VOCAB), ann_min_rows=m)
                 for n, m in (("flat", 10**6), ("ann", 30)))
    for store in (flat, ann):
        store.replace_source("a", entries)
    assert ann._vector_index() is not None and {"first_seen_us", "last_seen_us"} <= {
        i.columns[0] for i in ann.table.list_indices()}
    where = {"since": "2026-01-05T15:00Z", "until": "2026-01-05T16:00Z"}
    for vector in (None, entries[3].embedding):
        got = [[h["id"] for h in s.search(vector, where, 100)] for s in (flat, ann)]
        assert got[0] == got[1] and 0 < len(got[0]) < 40
    assert [h["id"] for h in ann.search(None, {}, 45)] == [h["id"] for h in flat.search(
        None, {}, 45)]


def test_recordings_of_one_camera(kind, tmp_path):
    """A camera's recordings are kept apart: ids CAMERA/RECORDING:TRACK (the one named as the
    camera: CAMERA:TRACK), writing a recording again replaces only it, the camera filter and
    the camera counts cover them all."""
    store = open_store(kind, tmp_path)
    own = make_entries("door", 2, DIM)  # the recording named as its camera
    day1 = [dataclasses.replace(e, recording="day1", origin="/v/day1.mp4")
            for e in make_entries("door", 3, DIM, seed=1)]
    day2 = [dataclasses.replace(e, recording="day2", origin="/v/day2.mp4")
            for e in make_entries("door", 4, DIM, seed=2)]
    store.replace_source("door", own)
    store.replace_source("door", day1, "day1")
    store.replace_source("door", day2, "day2")
    store.replace_source("hall", make_entries("hall", 2, DIM))
    assert store.sources() == {"door": 9, "hall": 2}
    hits = store.search(None, {"source": "door"}, 100)
    assert sorted(h["id"] for h in hits) == sorted(
        ["door:1", "door:2", "door/day1:1", "door/day1:2", "door/day1:3",
         *(f"door/day2:{i}" for i in range(1, 5))])
    assert {h["recording"] for h in hits} == {"door", "day1", "day2"}
    store.replace_source("door", day1[:1], "day1")  # day1 again, shorter: only day1 changes
    assert store.sources() == {"door": 7, "hall": 2}
    got = store.get("door/day2:3")
    assert (got.source, got.recording, got.origin, got.id) == ("door", "day2", "/v/day2.mp4",
                                                                "door/day2:3")
    assert store.get("door/day1:2") is None and store.get("door:2").recording == ""
    assert [(r["camera"], r["recording"], r["origin"], r["entries"])
            for r in store.recordings()] == [("door", "day1", "/v/day1.mp4", 1),
                                              ("door", "day2", "/v/day2.mp4", 4),
                                              ("door", "door", None, 2), ("hall", "hall", None, 2)]
    store.replace_source("door", [], "day2")
    assert store.sources() == {"door": 3, "hall": 2}


def test_a_lance_index_made_before_times_and_recordings(tmp_path):
    """Its rows show no times and their camera as their recording; a time filter says why
    it passes nobody; the next write adds the columns, and the old rows stay one recording."""
    store = open_store("lancedb", tmp_path)
    store.replace_source("a", make_entries("a", 4, DIM))
    store.table.drop_columns(list(ADDED_COLUMNS))  # as an older personkit wrote it
    old = open_store("lancedb", tmp_path)
    hits = old.search(None, {}, 10)
    assert [h["id"] for h in hits] == ["a:1", "a:2", "a:3", "a:4"]
    assert hits[0]["first_seen"] is None and hits[0]["recording"] == "a"
    assert old.search(make_entries("a", 4, DIM)[0].embedding, {}, 1)[0]["id"] == "a:1"
    with pytest.raises(FilterError, match="made before it kept capture times.*since="):
        old.search(None, {"since": "2026-01-05T14:00:00Z"}, 10)
    old.replace_source("a", timed("a", 2, seed=3, recording="day2"), "day2")  # adds the columns
    assert set(ADDED_COLUMNS) <= set(old.table.schema.names)
    assert old.sources() == {"a": 6}
    assert [r["recording"] for r in old.recordings()] == ["a", "day2"]
    assert [h["id"] for h in old.search(None, {}, 3)] == ["a/day2:2", "a/day2:1", "a:1"]
    old.replace_source("a", make_entries("a", 1, DIM))  # the old recording, replaced
    assert old.sources() == {"a": 3}


def test_qdrant_points_written_before_recordings_are_their_cameras(tmp_path):
    """Points without a recording (an older collection) belong to the recording named as
    their camera: writing it again replaces them, another recording leaves them."""
    store = open_store("qdrant", tmp_path)
    store.replace_source("a", make_entries("a", 4, DIM))
    m = store.m
    store.client.delete_payload(store.collection, list(ADDED_COLUMNS),
                                points=m.FilterSelector(filter=m.Filter()), wait=True)
    store.replace_source("a", timed("a", 2, seed=3, recording="day2"), "day2")
    assert store.sources() == {"a": 6} and store.search(None, {}, 1)[0]["id"] == "a/day2:2"
    store.replace_source("a", make_entries("a", 1, DIM))
    assert store.client.count(store.collection, exact=True).count == 3
    assert sorted(h["id"] for h in store.search(None, {}, 10)) == ["a/day2:1", "a/day2:2",
                                                                   "a:1"]
    store.close()


def test_index_search_takes_a_time_range(tmp_path):
    from personkit.index import IndexInfo, PeopleIndex

    index = PeopleIndex.create_or_open(tmp_path / "idx", IndexInfo("m", DIM, VOCAB))
    index.add("cam", timed("cam", 6))
    got = index.search(where="camera=cam", since="2026-01-05T14:30Z", k=10)
    assert got["where"] == {"source": "cam", "since": "2026-01-05T14:30:00.000000Z"}
    assert [h["last_seen"] for h in got["hits"]] == sorted(
        (h["last_seen"] for h in got["hits"]), reverse=True) and got["hits"]
    with pytest.raises(FilterError, match="since '13:00 yesterday' is not an ISO-8601"):
        index.search(since="13:00 yesterday")
    with pytest.raises(ValueError, match="recording 'x/y' of camera 'cam': a recording's name "
                                         "cannot hold '/'"):
        index.add("cam", [], "x/y")
    with pytest.raises(ValueError, match="entry cam:1 is not of recording 'cam/day2'"):
        index.add("cam", timed("cam", 1), "day2")


def test_which_recording_a_source_is():
    """The same origin is the same recording; a recording an older index kept without an
    origin is taken over; a new one gets its name, numbered while the camera has it; a
    camera's ids never become another camera's."""
    from personkit.index.build import recording_for

    def rec(camera, recording, origin):
        return {"camera": camera, "recording": recording, "origin": origin, "entries": 1}

    have = [rec("door", "door", "/v/a.mp4"), rec("door", "day2", "/v/day2.mp4"),
            rec("hall", "hall", None)]
    assert recording_for("door", "/v/day2.mp4", "x", have) == "day2"  # again: replaced
    assert recording_for("door", "/v/a.mp4", "x", have) == ""  # the one named as the camera
    assert recording_for("door", "/w/day2.mp4", "day2", have) == "day2_2"  # another day2
    assert recording_for("hall", "/v/hall.mp4", "hall2", have) == ""  # an older one, taken
    assert recording_for("lobby", None, "lobby", have) == ""
    with pytest.raises(ValueError, match="camera 'door/day2': its entry ids would be those "
                                         "of camera 'door''s recording 'day2'"):
        recording_for("door/day2", "/x", "door/day2", have)


def test_each_connection_to_a_stream_is_a_recording(tmp_path):
    """A stream's track folder names its address (tracks.json's source_path); its recording
    is that address at the time its first frame arrived, named by the connection's time, so a
    second connection adds to the camera."""
    import re
    from types import SimpleNamespace

    from personkit.index.build import (
        _default_recording,
        recording_for,
        source_origin,
        tracks_origin,
    )
    from personkit.track.io import TrackSource
    from personkit.track.run import _source_path

    url = "rtsp://10.0.0.5/door"
    assert _source_path(TrackSource("door", None, 25, None, live=SimpleNamespace(url=url))) == url
    assert source_origin(url) is None
    name = _default_recording(url, "door", True, False)
    assert re.fullmatch(r"\d{8}T\d{6}Z", name)
    start = "2026-01-05T14:00:00.000000Z"
    assert tracks_origin(tmp_path, {"source_path": url, "start_time": start}) == f"{url} {start}"
    have = [{"camera": "door", "recording": "20260105T130000Z", "origin": f"{url} x",
             "entries": 3}]
    assert recording_for("door", None, name, have) == name  # added beside the first


@pytest.mark.parametrize("backend", ["lancedb", "qdrant"])
def test_index_stats(backend, tmp_path, capsys):
    """``personkit index INDEX --stats`` (issue 37): entries per camera, recordings, the
    capture-time span, table versions (LanceDB) and bytes on disk."""
    if backend == "qdrant":
        pytest.importorskip("qdrant_client", reason="the index extra is not installed")
    from personkit.cli import main
    from personkit.index import IndexInfo, PeopleIndex

    path = tmp_path / "idx"
    index = PeopleIndex.create_or_open(path, IndexInfo("m", DIM, VOCAB,
                                                       extra={"backend": backend}))
    index.add("cam", timed("cam", 4, untimed=1))
    index.add("door", timed("door", 2, recording="day2", seed=1), "day2")
    stats = index.stats()
    assert stats["entries"] == 7 and stats["cameras"] == {"cam": 5, "door": 2}
    assert stats["recordings"] == 2
    assert (stats["first_seen"], stats["last_seen"]) == ("2026-01-05T14:00:00.000000Z",
                                                        "2026-01-05T14:23:00.000000Z")
    assert (stats["table_versions"] is None) == (backend == "qdrant")
    assert 0 < stats["bytes"]["store"] <= stats["bytes"]["total"]
    del index
    assert main(["index", str(path), "--stats"]) == 0
    out = capsys.readouterr().out
    assert "7 people" in out and "cam 5, door 2" in out and "2 recording(s)" in out
    assert main(["index", str(path)]) == 2  # neither sources nor --stats
    assert "--stats" in capsys.readouterr().err
