"""Fractional frame rates and times from presentation timestamps (issue #32, item 8): a
``seqinfo.ini`` with ``frameRate=12.5`` and a 12.5 frames/s video give frames 0.08 s apart and
a track over frames 1..26 lasting exactly 2.0 s; rates are kept exact in ``tracks.json`` and
given to the tracker as they are; a bad ``frameRate`` is named."""

from __future__ import annotations

import json
from fractions import Fraction

import cv2
import numpy as np
import pytest

from personkit.track.live import FrameClock, RealtimeFrames
from personkit.track.run import track


def one_person_sequence(root, n=26, rate="12.5", name=None):
    """A MOT sequence of ``n`` 64×48 noise frames with one detection per frame (the same box:
    one track over every frame) and ``frameRate=rate``."""
    rng = np.random.default_rng(0)
    (root / "img1").mkdir(parents=True)
    for t in range(1, n + 1):
        cv2.imwrite(str(root / "img1" / f"{t:06d}.jpg"),
                    rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    (root / "det").mkdir()
    (root / "det" / "det.txt").write_text(
        "".join(f"{t},-1,11,6,20,30,0.9,-1,-1,-1\n" for t in range(1, n + 1)))
    (root / "seqinfo.ini").write_text(f"[Sequence]\nname={name or root.name}\nimDir=img1\n"
                                      f"frameRate={rate}\nseqLength={n}\n")
    return root


def _tracks(out):
    return json.loads((out / "tracks.json").read_text())


def _check_times(data, rate):
    """Every frame at (frame - 1) / rate, and one track over frames 1..26: 0.0 to 2.0 s."""
    assert data["frame_rate"] == rate
    (t,) = data["tracks"]
    assert (t["first_frame"], t["last_frame"]) == (1, 26)
    assert (t["first_time"], t["last_time"]) == (0.0, 2.0)  # exactly, not 25 / 12 = 2.083
    times = [f["time"] for f in t["frames"]]
    assert times == [round((f["frame"] - 1) / 12.5, 6) for f in t["frames"]]
    assert np.allclose(np.diff(times), 0.08, atol=1e-9)


def test_a_mot_sequence_at_12_5_frames_per_second(extra, tmp_path):
    seq = one_person_sequence(tmp_path / "seq")
    track(None, seq, tmp_path / "out", embeddings="none")
    data = _tracks(tmp_path / "out")
    _check_times(data, 12.5)
    assert '"frame_rate": 12.5,' in (tmp_path / "out" / "tracks.json").read_text()


def test_a_video_at_12_5_frames_per_second_times_from_its_timestamps(extra, tmp_path):
    import av

    from personkit.inference.sources import read_image
    from personkit.track.io import VideoWriter, open_video

    seq = one_person_sequence(tmp_path / "seq")
    writer = VideoWriter(tmp_path / "clip.mp4", 12.5)
    for path in sorted((seq / "img1").iterdir()):
        writer.write(read_image(path))
    writer.close()
    with av.open(str(tmp_path / "clip.mp4")) as c:
        assert c.streams.video[0].average_rate == Fraction(25, 2)  # not rounded to 12
        pts = [f.time for f in c.decode(video=0)]
    assert len(pts) == 26
    track(None, tmp_path / "clip.mp4", tmp_path / "out", detections=seq / "det" / "det.txt",
          embeddings="none")
    data = _tracks(tmp_path / "out")
    _check_times(data, 12.5)
    assert [f["time"] for f in data["tracks"][0]["frames"]] == [round(p - pts[0], 6)
                                                                 for p in pts]
    writer = VideoWriter(tmp_path / "ntsc.mp4", 30000 / 1001)  # 29.97: kept as 30000/1001
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.close()
    assert open_video(tmp_path / "ntsc.mp4", seq / "det" / "det.txt").frame_rate == 30000 / 1001


def test_an_integer_rate_stays_an_integer(extra, tmp_path):
    seq = one_person_sequence(tmp_path / "seq", n=4, rate="10")
    track(None, seq, tmp_path / "out", embeddings="none")
    text = (tmp_path / "out" / "tracks.json").read_text()
    assert '"frame_rate": 10,' in text
    (t,) = _tracks(tmp_path / "out")["tracks"]
    assert [f["time"] for f in t["frames"]] == [0.0, 0.1, 0.2, 0.3]


def test_the_tracker_gets_the_exact_rate(extra):
    """BoxMOT's Python BotSort and ByteTrack only scale their lost-track buffer by the rate:
    int(rate / 30 * track_buffer), which 12.5 serves exactly (no rounding to 12 first)."""
    from personkit.track.tracker import Tracker, make_boxmot_tracker

    assert make_boxmot_tracker("botsort", False, 12.5).max_time_lost == int(12.5 / 30 * 30)
    assert make_boxmot_tracker("bytetrack", False, 12.5).max_time_lost == int(12.5 / 30 * 25)
    assert make_boxmot_tracker("botsort", False, 45.5).max_time_lost == 45  # round(45.5) = 46
    Tracker(None, "botsort", "none", frame_rate=12.5)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf", ""])
def test_a_bad_frame_rate_names_the_file_and_the_value(extra, tmp_path, value):
    from personkit.track.io import open_track_source

    seq = one_person_sequence(tmp_path / "seq", n=2, rate=value)
    with pytest.raises(ValueError, match=rf"seq/seqinfo.ini: frameRate must be a positive "
                                         rf"number of frames per second, got '{value}'"):
        open_track_source(seq)


def test_frame_clock_uses_timestamps_relative_to_the_first_frame():
    clock = FrameClock(12.5)
    assert [clock(n, 0.16 + (n - 1) * 0.08) for n in (1, 2, 3)] == [0.0, 0.08, 0.16]
    assert clock(5, None) == 0.32  # a frame without a timestamp: (n - 1) / rate
    late = FrameClock(25)
    assert late(3, 10.0) == 0.08 and late(4, 10.04) == 0.12  # first timed frame at (n-1)/rate


def test_live_frames_carry_their_timestamps():
    frames = [(np.zeros((2, 2, 3), np.uint8), 1.5 + i * 0.04) for i in range(3)]
    live = RealtimeFrames(iter(frames), 25, queue_size=10)
    got = list(live.timed())
    assert [(n, s) for n, _, s in got] == [(1, 0.0), (2, 0.04), (3, 0.08)]
    assert live.frame_rate == 25
    untimed = RealtimeFrames(iter([np.zeros((2, 2, 3), np.uint8)] * 2), 12.5, queue_size=10)
    assert [s for _, _, s in untimed.timed()] == [0.0, 0.08] and untimed.frame_rate == 12.5


def test_capture_times_from_start_time_metadata_or_modification_time(extra, tmp_path):
    """``tracks.json`` places a recording in time (issue #36, item 2): ``--start-time`` first,
    then a video's ``creation_time``, then the folder's modification time; each track's
    ``first_seen``/``last_seen`` is that start plus its PTS seconds, in ISO-8601 UTC."""
    import os

    import av

    seq = one_person_sequence(tmp_path / "seq")
    os.utime(seq, (1_750_000_000, 1_750_000_000))  # 2025-06-15T15:06:40Z
    track(None, seq, tmp_path / "mtime", embeddings="none")
    data = _tracks(tmp_path / "mtime")
    assert (data["start_time"], data["time_source"]) == ("2025-06-15T15:06:40.000000Z", "mtime")
    (t,) = data["tracks"]
    assert (t["first_seen"], t["last_seen"]) == ("2025-06-15T15:06:40.000000Z",
                                                 "2025-06-15T15:06:42.000000Z")  # 2.0 s later
    track(None, seq, tmp_path / "given", embeddings="none", start_time="2026-01-05T14:00+01:00")
    (t,) = (data := _tracks(tmp_path / "given"))["tracks"]
    assert data["time_source"] == "start_time" and t["first_seen"] == "2026-01-05T13:00:00.000000Z"
    assert t["frames"][1]["time"] == 0.08 and t["last_seen"] == "2026-01-05T13:00:02.000000Z"
    with av.open(str(tmp_path / "clip.mp4"), "w") as c:  # creation_time in the container
        c.metadata["creation_time"] = "2025-06-01T10:00:00.000000Z"
        s = c.add_stream("libx264", rate=Fraction(25, 2))
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for path in sorted((seq / "img1").iterdir()):
            image = cv2.imread(str(path))[:, :, ::-1].copy()
            c.mux(s.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        c.mux(s.encode())
    track(None, tmp_path / "clip.mp4", tmp_path / "video", detections=seq / "det" / "det.txt",
          embeddings="none")
    (t,) = (data := _tracks(tmp_path / "video"))["tracks"]
    assert (data["start_time"], data["time_source"]) == ("2025-06-01T10:00:00.000000Z",
                                                         "creation_time")
    assert t["last_seen"] == "2025-06-01T10:00:02.000000Z"


def test_a_bad_start_time_is_named_and_a_live_source_takes_the_wall_clock(extra, tmp_path,
                                                                         capsys):
    import time

    from personkit.cli import main
    from personkit.track.io import TrackSource

    seq = one_person_sequence(tmp_path / "seq", n=2)
    assert main(["track", "--model", str(tmp_path / "none.pt"), str(seq), "--out",
                 str(tmp_path / "out"), "--start-time", "yesterday noon"]) == 2
    assert capsys.readouterr().err.strip() == (
        "personkit track: error: --start-time 'yesterday noon' is not an ISO-8601 time (e.g. "
        "2026-01-05T14:00:00Z; without a zone it is UTC)")
    before = time.time()
    live = RealtimeFrames(iter([np.zeros((2, 2, 3), np.uint8)] * 2), 25, queue_size=10)
    list(live.timed())
    start, how = TrackSource("cam", None, 25, None, live=live).clock()
    assert how == "wall_clock" and before <= start.timestamp() <= time.time()
