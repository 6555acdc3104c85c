"""Sources that break (issue #32, item 10): a video that stops decoding halfway (a truncated
fragmented MP4) or a sequence with a broken image ends the run at that frame with everything
tracked before it written and the error named (summary, tracks.json, stderr; exit status 2);
a non-UTF-8 sequence or file name is refused before tracking, naming the path."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest

from personkit.cli import main
from personkit.track.run import TrackingStopped, track

RATE = 10


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tiny_models import make_model, save_model

    return save_model(make_model(), tmp_path_factory.mktemp("ckpt") / "model.safetensors")


def fragmented_mp4(path, n=40):
    """An H.264 fragmented MP4 (``movflags=frag_keyframe+empty_moov``, a keyframe every 5
    frames) of ``n`` 64×48 noise frames: cut anywhere, its frames decode up to the cut."""
    import av

    rng = np.random.default_rng(1)
    with av.open(str(path), "w", options={"movflags": "frag_keyframe+empty_moov"}) as out:
        stream = out.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": "5"}
        for _ in range(n):
            image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def truncated_video(tmp_path, n=40):
    """A fragmented MP4 cut in the middle, and a detections file for all of its frames."""
    whole = fragmented_mp4(tmp_path / "whole.mp4", n).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[:len(whole) // 2])
    det = tmp_path / "det.txt"
    det.write_text("".join(f"{t},-1,11,6,20,30,0.9,-1,-1,-1\n" for t in range(1, n + 1)))
    return cut, det


def test_a_truncated_video_keeps_what_was_tracked_and_names_the_frame(extra, checkpoint,
                                                                       tmp_path, capsys):
    cut, det = truncated_video(tmp_path)
    out = tmp_path / "out"
    assert main(["track", "--model", str(checkpoint), str(cut), "--detections", str(det), "--out",
                 str(out), "--embeddings", "none", "--video-out",
                 "--no-progress"]) == 1  # a run that had to stop, its results written
    summary = json.loads((out / "summary.json").read_text())
    n = summary["frames"]
    assert 5 < n < 40
    assert summary["ended"].startswith(f"error: cannot decode video {cut} at frame {n + 1}: ")
    err = capsys.readouterr().err
    assert summary["ended"] in err and f"the {n} frames before it are tracked" in err
    assert "Traceback" not in err
    rows = np.loadtxt(out / "results.txt", delimiter=",", ndmin=2)
    assert rows[:, 0].max() == n  # every frame that was decoded is in the results
    tracks = json.loads((out / "tracks.json").read_text())
    assert tracks["ended"] == summary["ended"]
    assert tracks["tracks"][0]["last_frame"] == n and (out / "thumbs").is_dir()
    assert (out / "gallery.json").is_file() and (out / "video.mp4").stat().st_size > 0


def test_the_python_api_raises_after_writing(extra, tmp_path):
    cut, det = truncated_video(tmp_path)
    with pytest.raises(TrackingStopped, match=r"cannot decode video .*cut.mp4 at frame \d+") as e:
        track(None, cut, tmp_path / "out", detections=det, embeddings="none")
    assert e.value.summary["frames"] > 0 and "ended" in e.value.summary
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["ended"] == \
        e.value.summary["ended"]


def test_a_broken_image_ends_a_sequence_and_eval_is_skipped(extra, sequence, tmp_path, capsys):
    seq = tmp_path / "seq"
    shutil.copytree(sequence, seq)
    (seq / "img1" / "000005.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    with pytest.raises(TrackingStopped) as e:
        track(None, seq, tmp_path / "out", embeddings="none", evaluate=True)
    summary = e.value.summary
    assert summary["frames"] == 4 and "metrics" not in summary
    assert summary["ended"].startswith("error: cannot read frame 5: ")
    assert str(seq / "img1" / "000005.jpg") in summary["ended"]  # read_image's message
    assert summary["metrics_skipped"] and not (tmp_path / "out" / "metrics.json").exists()
    rows = np.loadtxt(tmp_path / "out" / "results.txt", delimiter=",", ndmin=2)
    assert set(rows[:, 0].astype(int)) == {1, 2, 3, 4}
    assert "cannot read frame 5" in capsys.readouterr().err


# ----------------------------------------------------------------------- non-UTF-8 names

posix_bytes = pytest.mark.skipif(os.name != "posix" or sys.getfilesystemencoding() != "utf-8",
                                 reason="needs POSIX byte file names")


@posix_bytes
def test_a_non_utf8_folder_name_is_refused_before_tracking(extra, sequence, checkpoint,
                                                            tmp_path, capsys):
    """Before: tracked, then ``personkit index`` failed in the store with "'utf-8' codec can't
    encode character '\\udcff'", naming nothing."""
    os.mkdir(os.fsencode(tmp_path) + b"/seq\xff")
    seq = tmp_path / os.fsdecode(b"seq\xff")
    shutil.copytree(sequence, seq, dirs_exist_ok=True)
    ini = seq / "seqinfo.ini"
    ini.write_text("".join(line for line in ini.read_text().splitlines(keepends=True)
                           if not line.startswith("name=")))  # the folder names it
    out = tmp_path / "out"
    assert main(["track", "-m", str(checkpoint), str(seq), "--out", str(out), "--embeddings",
                 "none", "--engine", "torch",  # no engine line (--engine auto says one)
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{tmp_path}/seq\\xff: the name 'seq\\xff' is not UTF-8 text" in err
    assert not (out / "results.txt").exists()  # refused before any frame was tracked
    ini.write_text(ini.read_text().replace("[Sequence]\n", "[Sequence]\nname=door\n"))
    assert main(["track", "-m", str(checkpoint), str(seq), "--out", str(out), "--embeddings",
                 "none",
                 "--no-progress"]) == 0  # a name= in seqinfo.ini names it instead
    assert json.loads((out / "tracks.json").read_text())["sequence"] == "door"


@posix_bytes
def test_a_non_utf8_video_name_or_seqinfo_name_is_named(extra, sequence, tmp_path):
    from personkit.track.io import open_track_source

    video = tmp_path / os.fsdecode(b"clip\xe9.mp4")
    shutil.copy(fragmented_mp4(tmp_path / "v.mp4", 5), video)
    with pytest.raises(ValueError, match=r"clip\\xe9.mp4: the name 'clip\\xe9' is not UTF-8"):
        open_track_source(video, sequence / "det" / "det.txt")
    seq = tmp_path / "seq"
    shutil.copytree(sequence, seq)
    (seq / "seqinfo.ini").write_bytes(b"[Sequence]\nname=caf\xe9\nimDir=img1\n")
    with pytest.raises(ValueError, match=r"seqinfo.ini:2: not UTF-8 text"):
        open_track_source(seq)
