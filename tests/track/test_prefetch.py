"""Reading frames in a thread of their own (issue 38, item 2): the frames arrive in order,
at most ``depth`` ahead; a source's error arrives where it happened; a run that stops early
stops the reader and closes its source; a tracked sequence is the same read either way."""

from __future__ import annotations

import threading
import time

import pytest

from personkit.track.io import prefetched


def _counting(n: int, made: list[int], closed: list[str], fail_at: int | None = None):
    try:
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"frame {i} cannot be decoded")
            made.append(i)
            yield i
    finally:
        closed.append(threading.current_thread().name)


def _wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.01)


def test_items_arrive_in_order_and_the_reader_stays_at_most_depth_ahead():
    made: list[int] = []
    closed: list[str] = []
    it = prefetched(_counting(50, made, closed), depth=2)
    assert next(it) == 0
    _wait_for(lambda: len(made) >= 4)
    time.sleep(0.2)  # it could run further: it must not
    assert len(made) == 4  # the one taken, two queued, one in the reader's hand
    assert [0, *it] == list(range(50))
    assert closed == ["personkit-prefetch"]


def test_an_error_of_the_source_arrives_after_the_frames_before_it():
    made: list[int] = []
    got = []
    with pytest.raises(ValueError, match="frame 3 cannot be decoded"):
        for i in prefetched(_counting(10, made, [], fail_at=3)):
            got.append(i)
    assert got == [0, 1, 2]


def test_stopping_early_stops_the_reader_and_closes_the_source():
    made: list[int] = []
    closed: list[str] = []
    it = prefetched(_counting(10_000, made, closed), depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    assert closed == ["personkit-prefetch"]  # closed by the reader, in its own thread
    count = len(made)
    time.sleep(0.2)
    assert count == len(made) < 10  # nothing read after the stop


def test_a_sequence_is_tracked_the_same_with_and_without_the_reading_thread(
        extra, sequence, tmp_path):
    from personkit.track import Tracker
    from personkit.track.io import open_track_source
    from personkit.track.run import track_source

    results = {}
    for overlap in (False, True):
        out = tmp_path / str(overlap)
        summary = track_source(Tracker(None, "botsort", "none", frame_rate=25),
                               open_track_source(sequence), out, progress=False,
                               overlap=overlap)
        results[overlap] = (out / "results.txt").read_text()
        assert ("seconds_alongside" in summary) is overlap
        assert ("decode" in summary["seconds"]) is not overlap
    assert results[True] == results[False] and results[True].count("\n") > 20
