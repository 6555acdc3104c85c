"""What `personkit index` reads and how it names sources (issue #32, items 4, 7, 8 and 10): only
files inside the track folder it indexes, ground truth only from a MOT sequence folder, times
from tracks.json, sources of one command named uniquely, a source whose tracking broke indexed
with a warning, and a non-UTF-8 name refused before tracking."""

from __future__ import annotations

import json
import os
import shutil
import sys

import cv2
import numpy as np
import pytest

from personkit.cli import main
from personkit.index.build import source_names, track_entries
from personkit.index.entries import IndexInfo


@pytest.fixture(scope="module")
def extra():
    for module in ("boxmot", "av"):
        pytest.importorskip(module, reason="the tracking extra is not installed")


def one_person_sequence(root, n=26, rate="12.5"):
    """A MOT sequence of ``n`` 64×48 noise frames at ``rate`` frames/s with one person (the
    same box every frame, ground-truth id 7): one track over every frame."""
    rng = np.random.default_rng(0)
    (root / "img1").mkdir(parents=True)
    for t in range(1, n + 1):
        cv2.imwrite(str(root / "img1" / f"{t:06d}.jpg"),
                    rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    for kind, row in (("det", "{t},-1,11,6,20,30,0.9,-1,-1,-1"), ("gt", "{t},7,11,6,20,30,1,1,1")):
        (root / kind).mkdir()
        (root / kind / f"{kind}.txt").write_text(
            "".join(row.format(t=t) + "\n" for t in range(1, n + 1)))
    (root / "seqinfo.ini").write_text(f"[Sequence]\nname={root.name}\nimDir=img1\n"
                                      f"frameRate={rate}\nseqLength={n}\n")
    return root


@pytest.fixture(scope="module")
def tracked(extra, tiny_checkpoint, tmp_path_factory):
    """A `personkit track` folder of a 12.5 frames/s sequence (one track, frames 1..26)."""
    from personkit.inference import Predictor
    from personkit.track.run import track

    root = tmp_path_factory.mktemp("tracked")
    seq = one_person_sequence(root / "door")
    track(Predictor.from_checkpoint(tiny_checkpoint, "cpu"), seq, root / "out")
    return root / "out"


def _info(track_dir):
    model = json.loads((track_dir / "gallery.json").read_text())["model"]
    return IndexInfo(model, 128, {})


def _copy(tracked, dst, **changes):
    """A copy of the track folder with ``changes`` made to its one track in tracks.json."""
    shutil.copytree(tracked, dst)
    data = json.loads((dst / "tracks.json").read_text())
    for key, value in changes.items():
        if key == "source_path":
            data[key] = value
        elif value is None:
            data["tracks"][0].pop(key)
        else:
            data["tracks"][0][key] = value
    (dst / "tracks.json").write_text(json.dumps(data))
    return dst


# ------------------------------------------------------------------- files inside the folder


def test_times_come_from_tracks_json(tracked, tmp_path):
    """12.5 frames/s, frames 1..26: 0.0 to 2.0 s exactly (not 25 / 12 = 2.083 s)."""
    _, (entry,) = track_entries(tracked, _info(tracked))
    assert (entry.first_frame, entry.last_frame) == (1, 26)
    assert (entry.first_time, entry.last_time) == (0.0, 2.0)
    moved = _copy(tracked, tmp_path / "a", first_time=0.5, last_time=3.0)
    assert track_entries(moved, _info(moved))[1][0].last_time == 3.0  # tracks.json's own times
    old = _copy(tracked, tmp_path / "b", first_time=None, last_time=None)  # an older track
    assert track_entries(old, _info(old))[1][0].last_time == 2.0  # (26 - 1) / 12.5


def test_capture_times_come_from_tracks_json_or_start_time(tracked, tmp_path):
    """Issue #36: an entry is seen at its recording's start plus its seconds (the start of
    tracks.json, or --start-time), and knows its recording's origin; an older tracks.json
    without a start gives no times."""
    data = json.loads((tracked / "tracks.json").read_text())
    _, (entry,) = track_entries(tracked, _info(tracked))
    assert (entry.first_seen, entry.time_source) == (data["start_time"], "mtime")
    assert entry.origin == data["source_path"] and entry.last_seen > entry.first_seen
    _, (given,) = track_entries(tracked, _info(tracked), start_time="2026-01-05T14:00Z")
    assert (given.first_seen, given.last_seen, given.time_source) == (
        "2026-01-05T14:00:00.000000Z", "2026-01-05T14:00:02.000000Z", "start_time")
    old = _copy(tracked, tmp_path / "old")
    data.pop("start_time")
    (old / "tracks.json").write_text(json.dumps(data))
    assert track_entries(old, _info(old))[1][0].first_seen is None


def test_a_new_recording_of_a_camera_adds_and_the_same_one_replaces(tracked, tiny_checkpoint,
                                                                    tmp_path, capsys):
    """``--name door`` on a second recording adds to camera door (issue #36, item 4); the
    first again replaces only itself; search filters by camera and time, newest first."""
    from personkit.index import PeopleIndex

    idx, days = str(tmp_path / "idx"), []
    for day in ("day1", "day2"):
        days.append(str(_copy(tracked, tmp_path / day, source_path=f"{tmp_path}/{day}.mp4")))
    for day, start in zip(days, ("2026-01-05T14:00Z", "2026-01-06T14:00Z"), strict=True):
        assert main(["index", idx, day, "--name", "door", "--start-time", start, "--model",
                     str(tiny_checkpoint), "--no-progress"]) == 0
    assert "indexed door/door_2: 1" in capsys.readouterr().out
    assert main(["index", idx, days[0], "--name", "door", "--start-time", "2026-01-05T14:00Z",
                 "--no-progress"]) == 0  # again
    index = PeopleIndex.open(idx)
    assert index.store.sources() == {"door": 2}
    hits = index.search(where="camera=door")["hits"]
    assert [(h["id"], h["recording"], h["first_seen"]) for h in hits] == [
        ("door/door_2:1", "door_2", "2026-01-06T14:00:00.000000Z"),
        ("door:1", "door", "2026-01-05T14:00:00.000000Z")]
    capsys.readouterr()
    assert main(["search", idx, "--where", "camera=door", "--since", "2026-01-06",
                 "--until", "2026-01-06T23:00"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith(
        "door/door_2:1: frames 1-26, seen 2026-01-06T14:00:00.000000Z - "
        "2026-01-06T14:00:02.000000Z")
    assert main(["index", idx, days[0], "--crops", "--start-time", "2026-01-05"]) == 2
    assert "--start-time 2026-01-05: a folder of crops has no frames" in capsys.readouterr().err
    assert main(["search", idx, "--offset", "1"]) == 0
    assert [x.split(":")[0] for x in capsys.readouterr().out.splitlines()] == ["door"]
    for args, message in ((["--since", "monday"], "--since 'monday' is not an ISO-8601 time"),
                          (["--since", "1h", "--until", "2h"], "--since 1h ("),
                          (["--offset", "-1"], "--offset -1: give 0 or more")):
        assert main(["search", idx, *args]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err


def test_a_thumbnail_outside_the_track_folder_is_refused(tracked, tmp_path):
    outside = tmp_path / "x.jpg"
    outside.write_bytes((tracked / "thumbs" / "0001.jpg").read_bytes())
    for i, thumb in enumerate(["/etc/passwd", "../../x.jpg", str(outside)]):
        bad = _copy(tracked, tmp_path / "deep" / f"t{i}" / "out", thumbnail=thumb)
        if thumb == "../../x.jpg":
            shutil.copy(outside, bad.parent.parent / "x.jpg")  # it exists, and is still refused
        with pytest.raises(ValueError, match=rf"{bad / 'tracks.json'}: track 1's thumbnail "
                                             rf".*{thumb.lstrip('./')} is outside the track "
                                             rf"folder {bad}"):
            track_entries(bad, _info(bad))
    linked = _copy(tracked, tmp_path / "linked")
    (linked / "thumbs" / "0001.jpg").unlink()
    (linked / "thumbs" / "0001.jpg").symlink_to(outside)
    with pytest.raises(ValueError, match=rf"thumbnail {linked / 'thumbs' / '0001.jpg'} is "
                                         rf"outside the track folder .* resolves to {outside}"):
        track_entries(linked, _info(linked))
    inside = _copy(tracked, tmp_path / "inside")  # a link inside the folder is fine
    shutil.move(inside / "thumbs" / "0001.jpg", inside / "best.jpg")
    (inside / "thumbs" / "0001.jpg").symlink_to(inside / "best.jpg")
    assert track_entries(inside, _info(inside))[1][0].thumbnail[:2] == b"\xff\xd8"


def test_a_bank_or_tracks_file_linked_from_outside_is_refused(tracked, tmp_path):
    linked = _copy(tracked, tmp_path / "linked")
    shutil.move(linked / "gallery.json", tmp_path / "gallery.json")
    (linked / "gallery.json").symlink_to(tmp_path / "gallery.json")
    with pytest.raises(ValueError, match=rf"{linked}: gallery.json .* is outside the track "
                                         rf"folder"):
        track_entries(linked, IndexInfo("any", 128, {}))


def test_the_cli_refuses_it_by_name(tracked, tiny_checkpoint, tmp_path, capsys):
    bad = _copy(tracked, tmp_path / "bad", thumbnail="/etc/passwd")
    assert main(["index", str(tmp_path / "idx"), str(bad), "--model", str(tiny_checkpoint),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "/etc/passwd is outside the track folder" in err and "Traceback" not in err


def test_ground_truth_only_from_a_mot_sequence_folder(tracked, tmp_path):
    door = tracked.parent / "door"
    _, (entry,) = track_entries(tracked, _info(tracked))
    assert entry.identity == "door:7"  # source_path: the MOT sequence it tracked
    gt_only = tmp_path / "gt_only"
    shutil.copytree(door / "gt", gt_only / "gt")  # gt/gt.txt without img1/: not a sequence
    for path in (str(gt_only), "/etc", ""):
        moved = _copy(tracked, tmp_path / f"m{len(path)}", source_path=path)
        assert track_entries(moved, _info(moved))[1][0].identity == ""
        given = track_entries(moved, _info(moved), seq_dir=door)[1][0]  # what index tracked
        assert given.identity == "door:7"


# ----------------------------------------------------------------------- naming sources


def test_sources_sharing_a_name_are_named_from_their_paths(tmp_path):
    for rel in ("a/clip.mp4", "b/clip.mp4", "a/clip.mkv", "c/a/clip.mp4", "a_clip.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    a, b = str(tmp_path / "a/clip.mp4"), str(tmp_path / "b/clip.mp4")
    assert source_names([a, b], ["clip", "clip"]) == ["a_clip", "b_clip"]
    assert source_names([a, str(tmp_path / "b")], ["clip", "b"]) == ["clip", "b"]
    assert source_names([a, str(tmp_path / "a/clip.mkv")], ["clip", "clip"]) == [
        "clip.mp4", "clip.mkv"]  # stems alike at every depth: the extension tells them apart
    assert source_names([a, str(tmp_path / "c/a/clip.mp4")], ["clip", "clip"]) == [
        f"{tmp_path.name}_a_clip", "c_a_clip"]
    names = source_names([a, b, str(tmp_path / "a_clip.mp4")], ["clip", "clip", "a_clip"])
    assert names[2] == "a_clip" and names[:2] == [f"{tmp_path.name}_a_clip",
                                                  f"{tmp_path.name}_b_clip"]
    runs = [str(tmp_path / "runs" / c) for c in ("cam1", "cam2")]  # track folders of one clip
    assert source_names(runs, ["clip", "clip"]) == ["cam1", "cam2"]
    assert source_names(["rtsp://h1/s", "rtsp://h2/s"], ["h1_s", "h2_s"]) == ["h1_s", "h2_s"]
    with pytest.raises(ValueError, match=r"clip.mp4 is given twice"):
        source_names([a, str(tmp_path / "a" / ".." / "a" / "clip.mp4")], ["clip", "clip"])


def test_two_sequences_of_one_name_are_two_sources(extra, tiny_checkpoint, tmp_path, capsys):
    from personkit.index import PeopleIndex
    from personkit.synth.mot import write_mot_sequence

    seq = write_mot_sequence(tmp_path / "a" / "tiny-0", "tiny", seed=0)
    shutil.copytree(seq, tmp_path / "b" / "tiny-0")
    alone, both = tmp_path / "alone", tmp_path / "both"
    assert main(["index", str(alone), str(seq), "--model", str(tiny_checkpoint),
                 "--no-progress"]) == 0
    n = PeopleIndex.open(alone).store.sources()["tiny-0"]
    capsys.readouterr()
    assert main(["index", str(both), str(seq), str(tmp_path / "b" / "tiny-0"), "--model",
                 str(tiny_checkpoint), "--no-progress", "--start-time", "2026-01-05T14:00"]) == 0
    out = capsys.readouterr().out
    assert (f"{seq} (tiny-0) -> a_tiny-0, {tmp_path / 'b' / 'tiny-0'} (tiny-0) -> b_tiny-0"
            in out)
    assert "indexed a_tiny-0: " in out and ", b_tiny-0: " in out
    idx = PeopleIndex.open(both)
    assert idx.store.sources() == {"a_tiny-0": n, "b_tiny-0": n}
    assert {p.name for p in (both / "tracks").iterdir()} == {"a_tiny-0", "b_tiny-0"}
    meta, _ = idx.store.vectors()
    assert all(m["identity"].startswith("synth:0:") for m in meta)  # gt of the sequence tracked
    hits = idx.search(k=100)["hits"]  # tracked from --start-time (alone: from the folder's mtime)
    assert {(h["first_seen"][:16], h["time_source"]) for h in hits} == {
        ("2026-01-05T14:00", "start_time")}
    assert PeopleIndex.open(alone).search(k=1)["hits"][0]["time_source"] == "mtime"
    assert main(["index", str(both), str(seq), str(seq), "--model", str(tiny_checkpoint)]) == 2
    assert "is given twice" in capsys.readouterr().err
    assert main(["index", str(both), str(seq), str(tmp_path / "b" / "tiny-0"), "--name", "x",
                 "--model", str(tiny_checkpoint)]) == 2
    assert "--name names one source; 2 were given" in capsys.readouterr().err


# ------------------------------------------------------------------- broken and bad sources


def test_a_source_whose_tracking_broke_is_indexed_with_a_warning(extra, tiny_checkpoint,
                                                                  tmp_path, capsys):
    import av

    from personkit.index import PeopleIndex

    rng = np.random.default_rng(1)
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "frag_keyframe+empty_moov"}) as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": "5"}
        for _ in range(40):
            image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    cut = tmp_path / "cam.mp4"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    det = tmp_path / "det.txt"
    det.write_text("".join(f"{t},-1,11,6,20,30,0.9,-1,-1,-1\n" for t in range(1, 41)))
    assert main(["index", str(tmp_path / "idx"), str(cut), "--detections", str(det), "--model",
                 str(tiny_checkpoint), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"index: warning: cam: tracking ended early (error: cannot decode video {cut} at " \
           f"frame " in err and "indexing the 1 people tracked before it" in err
    entry = PeopleIndex.open(tmp_path / "idx").get("cam:1")
    assert entry.first_frame == 1 and 5 < entry.last_frame < 40


@pytest.mark.skipif(os.name != "posix" or sys.getfilesystemencoding() != "utf-8",
                    reason="needs POSIX byte file names")
def test_a_non_utf8_source_name_is_refused_before_tracking(tiny_checkpoint, tmp_path, capsys):
    os.mkdir(os.fsencode(tmp_path) + b"/cam\xff")
    crops = tmp_path / os.fsdecode(b"cam\xff")
    # (cv2.imwrite crashes on such a path: encode, then write the bytes)
    (crops / "a.jpg").write_bytes(cv2.imencode(".jpg", np.zeros((64, 32, 3), np.uint8))[1])
    assert main(["index", str(tmp_path / "idx"), str(crops), "--crops", "--model",
                 str(tiny_checkpoint), "--engine", "torch"]) == 2  # (auto says a line first)
    err = capsys.readouterr().err.strip()
    assert err == (f"personkit index: error: {tmp_path}/cam\\xff: the name 'cam\\xff' is not "
                   f"UTF-8 text (outputs and indexes hold UTF-8 names); rename it or name the "
                   f"source with --name")
    assert not (tmp_path / "idx").exists()
    assert main(["index", str(tmp_path / "idx"), str(crops), "--crops", "--name", "cam",
                 "--model", str(tiny_checkpoint), "--no-progress"]) == 0
