"""`personkit index` and `personkit search` end to end on two synthetic cameras (issue #25):
people of `tiny` and `tiny-b` (the same three people, another camera) tracked with the tiny
untrained model, indexed, searched by attributes, by an entry and by an image."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from personkit.cli import main


@pytest.fixture(scope="module")
def cameras(tmp_path_factory):
    for module in ("boxmot", "trackeval", "av"):
        pytest.importorskip(module, reason="the tracking extra is not installed")
    from personkit.synth.mot import write_mot_sequence

    root = tmp_path_factory.mktemp("cams")
    return [write_mot_sequence(root / f"{p}-0", p, seed=0) for p in ("tiny", "tiny-b")]


@pytest.fixture(scope="module")
def index(cameras, tiny_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("idx") / "people"
    assert main(["index", str(path), *map(str, cameras), "--model", str(tiny_checkpoint),
                 "--no-progress"]) == 0
    return path


def search_json(index: Path, out: Path, *args: str) -> dict:
    assert main(["search", str(index), "--out", str(out), *args]) == 0
    return json.loads((out / "results.json").read_text())


def test_index_holds_both_cameras_with_thumbnails_and_ground_truth(index):
    from personkit.index import PeopleIndex

    idx = PeopleIndex.open(index)
    summary = idx.summary()
    assert summary["store"] == "lancedb" and set(summary["sources"]) == {"tiny-0", "tiny-b-0"}
    meta, emb = idx.store.vectors()
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # every sequence of seed 0 shows the same people: identities are comparable across cameras
    ids = {m["source"]: set() for m in meta}
    for m in meta:
        ids[m["source"]].add(m["identity"])
    assert ids["tiny-0"] & ids["tiny-b-0"] and all(i.startswith("synth:0:") for s in ids.values()
                                                   for i in s if i)
    entry = idx.get(meta[0]["id"])
    thumb = cv2.imdecode(np.frombuffer(entry.thumbnail, np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape[0] == 128 and entry.last_frame >= entry.first_frame >= 1
    assert entry.last_time == pytest.approx((entry.last_frame - 1) / 10)  # tiny: 10 frames/s


def test_search_by_attributes_and_by_an_entry_of_another_camera(index, tmp_path, capsys):
    res = search_json(index, tmp_path / "a", "--where", "gender=male", "-k", "50")
    from personkit.index import PeopleIndex

    males = [m for m in PeopleIndex.open(index).search(where="gender=male", k=50)["hits"]]
    assert [h["id"] for h in res["hits"]] == [h["id"] for h in males] and res["hits"]
    assert all(h["attributes"]["gender"]["label"] == "male" for h in res["hits"])
    sheet = (tmp_path / "a" / "sheet.html").read_text()
    assert sheet.count('<img src="data:image/jpeg;base64,/9j/') == len(res["hits"])
    first = res["hits"][0]["id"]
    other = "tiny-b-0" if first.startswith("tiny-0") else "tiny-0"
    res = search_json(index, tmp_path / "b", "--example", first, "--where", f"source={other}")
    assert res["hits"] and all(h["source"] == other for h in res["hits"])
    dist = [h["distance"] for h in res["hits"]]
    assert dist == sorted(dist) and res["query"]["example"] == first
    assert res["threshold"] is None  # an untrained model has no calibrated threshold
    assert "distance" in capsys.readouterr().out


def test_search_by_an_image_and_a_box(index, cameras, tiny_checkpoint, tmp_path):
    frame = cameras[0] / "img1" / "000005.jpg"
    gt = np.loadtxt(cameras[0] / "gt" / "gt.txt", delimiter=",")
    row = gt[gt[:, 0] == 5][0]
    box = f"{row[2] - 1},{row[3] - 1},{row[2] - 1 + row[4]},{row[3] - 1 + row[5]}"
    res = search_json(index, tmp_path / "c", "--example", str(frame), "--box", box, "-k", "3")
    assert len(res["hits"]) == 3 and res["query"]["box"][2] > res["query"]["box"][0]
    assert set(res["query"]["attributes"]) == {"gender", "backpack", "upcolor"}


def test_reindexing_replaces_and_a_track_folder_indexes_under_its_camera_name(
        index, tiny_checkpoint, tmp_path):
    from personkit.index import PeopleIndex

    before = PeopleIndex.open(index).store.sources()
    tracked = index / "tracks" / "tiny-0"
    assert main(["index", str(index), str(tracked), "--model", str(tiny_checkpoint),
                 "--no-progress"]) == 0
    assert main(["index", str(index), str(tracked), "--name", "door", "--model",
                 str(tiny_checkpoint), "--no-progress"]) == 0
    after = PeopleIndex.open(index).store.sources()
    assert after == {**before, "door": before["tiny-0"]}


def test_a_folder_of_crops(tiny_checkpoint, tmp_path):
    crops = tmp_path / "crops"
    crops.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(crops / f"{i:04d}.jpg"), rng.integers(0, 255, (96, 48, 3), np.uint8))
    assert main(["index", str(tmp_path / "idx"), str(crops), "--crops", "--model",
                 str(tiny_checkpoint), "--no-progress"]) == 0
    res = search_json(tmp_path / "idx", tmp_path / "out", "--example", "crops:2")
    assert {h["id"] for h in res["hits"]} == {"crops:1", "crops:3"}


def test_bad_searches_and_another_models_index(index, tiny_checkpoint, tmp_path, capsys):
    assert main(["search", str(index), "--where", "colour=red"]) == 2
    assert "unknown attribute 'colour' in the filter; valid: gender, backpack, upcolor" in \
        capsys.readouterr().err
    assert main(["search", str(index), "--example", "tiny-0:999"]) == 2
    assert "no such image file, and no entry of that id" in capsys.readouterr().err
    from tiny_models import make_model, save_model

    torch_model = make_model()
    for p in torch_model.parameters():  # other weights: another embedding space
        p.data.mul_(1.01)
    other = save_model(torch_model, tmp_path / "other.safetensors")
    crops = tmp_path / "crops"
    crops.mkdir()
    cv2.imwrite(str(crops / "a.jpg"), np.zeros((64, 32, 3), np.uint8))
    assert main(["index", str(index), str(crops), "--crops", "--model", str(other),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds people of model" in err and "these come from model" in err
    assert main(["search", str(index), "--example", str(crops / "a.jpg"), "--model",
                 str(other)]) == 2
    assert "give the model it was built with" in capsys.readouterr().err


def test_a_video_with_a_detector_is_tracked_into_the_index(cameras, tiny_checkpoint, tmp_path):
    """A camera's video with no boxes anywhere: `personkit index` tracks it with the detector
    (issue #24's `--detector`) into INDEX/tracks/NAME, then indexes its people."""
    from fake_detectors import torchvision_layout

    from personkit.data.io import read_image
    from personkit.index import PeopleIndex
    from personkit.track.io import VideoWriter

    seq = cameras[0]
    gt = np.loadtxt(seq / "gt" / "gt.txt", delimiter=",")
    rows = gt[(gt[:, 0] == 1) & (gt[:, 2] > 0) & (gt[:, 2] + gt[:, 4] < 256)]  # inside frame 1
    people = np.c_[rows[:, 2:4] - 1, rows[:, 2:4] - 1 + rows[:, 4:6]].round(1).tolist()
    detector = torchvision_layout(tmp_path / "det.onnx", people, [0.9] * len(people))
    video = tmp_path / "door.mp4"
    writer = VideoWriter(video, 10)
    for image in sorted((seq / "img1").iterdir()):
        writer.write(read_image(image))
    writer.close()
    index = tmp_path / "idx"
    assert main(["index", str(index), str(video), "--detector", str(detector), "--model",
                 str(tiny_checkpoint), "--no-progress"]) == 0
    assert (index / "tracks" / "door" / "tracks.json").is_file()
    idx = PeopleIndex.open(index)
    assert idx.store.sources() == {"door": len(people)}  # the same boxes every frame
    entry = idx.get("door:1")
    assert (entry.first_frame, entry.last_frame) == (1, 12) and entry.identity == ""


def test_several_sources_are_tracked_with_one_model_and_one_detector(
        cameras, tiny_checkpoint, tmp_path, monkeypatch):
    """`personkit index` builds the predictor and the detector once and tracks every source
    with them (issue #33: the model was read for the index, then again for each source).
    Each source's summary counts only the boxes its own frames made the detector drop."""
    from fake_detectors import torchvision_layout

    import personkit.inference.detectors as detectors
    import personkit.inference.predictor as predictor

    loads, opens = [], []
    load_model, open_detector = predictor.load_model, detectors.open_detector

    def counted_load(*args, **kwargs):
        loads.append(args[0])
        return load_model(*args, **kwargs)

    def counted_open(*args, **kwargs):
        opens.append(args[0])
        return open_detector(*args, **kwargs)

    monkeypatch.setattr(predictor, "load_model", counted_load)
    monkeypatch.setattr(detectors, "open_detector", counted_open)
    nan = float("nan")
    detector = torchvision_layout(tmp_path / "det.onnx", [[10, 20, 60, 140], [nan, 1, 5, 9]],
                                  [0.9, 0.8])
    index = tmp_path / "idx"
    assert main(["index", str(index), *map(str, cameras), "--detector", str(detector),
                 "--model", str(tiny_checkpoint), "--no-progress"]) == 0
    assert loads == [tiny_checkpoint] and opens == [str(detector)]
    for seq in cameras:
        summary = json.loads((index / "tracks" / seq.name / "summary.json").read_text())
        assert summary["detector"]["dropped_non_finite"] == summary["frames"] > 0


def test_index_and_serve_take_the_model_from_the_index(index, tiny_checkpoint, tmp_path,
                                                       monkeypatch, capsys):
    """Issue #35: the model is named once, when the index is made; adding to it and serving
    it read the model it records (a new index without --model is refused, saying so)."""
    import shutil

    import personkit.serve.app as app
    from personkit.index import PeopleIndex
    from personkit.index.entries import DEFAULT_K

    copy = tmp_path / "people"
    shutil.copytree(index, copy)
    crops = tmp_path / "crops"
    crops.mkdir()
    cv2.imwrite(str(crops / "a.jpg"), np.full((64, 32, 3), 120, np.uint8))
    assert main(["index", str(copy), str(crops), "--crops", "--no-progress"]) == 0
    assert PeopleIndex.open(copy).store.sources()["crops"] == 1
    assert main(["index", str(tmp_path / "new"), str(crops), "--crops"]) == 2
    assert "give the model with --model" in capsys.readouterr().err
    served = {}
    monkeypatch.setattr(app, "serve", lambda predictor, index, **kw: served.update(
        path=str(predictor.path), index=index))
    assert main(["serve", "--index", str(copy)]) == 0
    assert served == {"path": str(tiny_checkpoint), "index": str(copy)}
    assert main(["search", str(copy), "--where", "gender=male"]) == 0
    assert len([x for x in capsys.readouterr().out.splitlines() if ": frames" in x]) <= DEFAULT_K


def test_forget_an_entry_leaves_no_byte_of_it_in_the_index_folder(index, tmp_path, capsys):
    """`personkit forget --entry`: the entry's thumbnail and embedding bytes are in the store's
    and the tracking output's files before and in none after; its track leaves tracks.json,
    results.txt and the bank; the audit log says who forgot whom; an unknown id changes
    nothing. (Camera tiny-b-0: another test indexes tiny-0's track folder again as "door",
    whose entries hold the same thumbnails.)"""
    import shutil

    from personkit.index import PeopleIndex

    copy = tmp_path / "people"
    shutil.copytree(index, copy)
    idx = PeopleIndex.open(copy)
    target = idx.get(min(r["id"] for r in idx.store.select({"source": "tiny-b-0"})))
    needles = [target.thumbnail, np.asarray(target.embedding, np.float32).tobytes()]

    def holding(needle: bytes) -> list[str]:
        return [str(p.relative_to(copy)) for p in copy.rglob("*")
                if p.is_file() and needle in p.read_bytes()]

    assert f"tracks/tiny-b-0/thumbs/{target.track_id:04d}.jpg" in holding(needles[0])
    assert holding(needles[1])
    count = idx.store.count()
    assert main(["forget", str(copy), "--entry", target.id, "--entry", "tiny-b-0:999"]) == 2
    assert "no entry 'tiny-b-0:999'" in capsys.readouterr().err
    assert PeopleIndex.open(copy).store.count() == count and holding(needles[0])
    assert main(["forget", str(copy), "--entry", target.id]) == 0
    assert f"forgot 1 entry ({target.id}); {count - 1} left" in capsys.readouterr().out
    assert not holding(needles[0]) and not holding(needles[1])
    tracks = json.loads((copy / "tracks" / "tiny-b-0" / "tracks.json").read_text())
    assert target.track_id not in {t["track_id"] for t in tracks["tracks"]} and tracks["tracks"]
    rows = (copy / "tracks" / "tiny-b-0" / "results.txt").read_text().splitlines()
    assert rows and all(int(r.split(",")[1]) != target.track_id for r in rows)
    bank = json.loads((copy / "tracks" / "tiny-b-0" / "gallery.json").read_text())["entries"]
    emb = np.load(copy / "tracks" / "tiny-b-0" / "track_embeddings.npy")
    assert len(emb) == len(bank) and target.track_id not in {e["track_id"] for e in bank}
    assert main(["audit", str(copy), "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["event"] == "forget" and record["ids"] == [target.id]
    assert main(["forget", str(copy), "--camera", "tiny-0", "--dry-run"]) == 0
    assert "would forget" in capsys.readouterr().out and (copy / "tracks" / "tiny-0").is_dir()
    assert main(["forget", str(copy), "--camera", "tiny-0"]) == 0
    assert not (copy / "tracks" / "tiny-0").exists()
    assert "tiny-0" not in PeopleIndex.open(copy).store.sources()
