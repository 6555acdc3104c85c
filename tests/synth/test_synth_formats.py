"""The written files follow the native formats (names, folders, .mat/JSON/CSV/PNG layouts)."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict

import cv2
import numpy as np
import pytest
import scipy.io

from personkit.synth.appearance import DOWN_COLOURS, UP_COLOURS
from personkit.synth.presets import get_preset

MARKET_NAME = re.compile(r"(-1|\d{4})_c([1-6])s(\d)_(\d{6})_(\d{2})\.jpg")


def _market(world):
    root = world.market_root
    out = {}
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        names = sorted(p.name for p in (root / folder).iterdir())
        parsed = []
        for n in names:
            m = MARKET_NAME.fullmatch(n)
            assert m, n
            parsed.append((int(m.group(1)), int(m.group(2)), m.group(5)))
        out[folder] = parsed
    return out


def test_market_names_and_splits(tiny_world):
    m = _market(tiny_world)
    train = {p for p, _, _ in m["bounding_box_train"]}
    gallery = m["bounding_box_test"]
    test = {p for p, _, _ in gallery if p > 0}
    assert 0 not in train and -1 not in train
    preset = get_preset("tiny")
    assert len(train) == preset.market_train_ids and len(test) == preset.market_test_ids
    assert not train & test
    assert {p for p, _, _ in gallery} >= {-1, 0}  # junk and distractors
    queries = m["query"]
    assert all(box == "00" for _, _, box in queries)
    assert all(box != "00" for _, _, box in gallery + m["bounding_box_train"])
    assert len({(p, c) for p, c, _ in queries}) == len(queries)  # one per (pid, camera)
    assert {p for p, _, _ in queries} == test
    for pid, cam, _ in queries:
        assert any(p == pid and c != cam for p, c, _ in gallery)
    cams = defaultdict(set)
    for p, c, _ in m["bounding_box_train"]:
        cams[p].add(c)
    assert all(len(c) >= 2 for c in cams.values())


def test_market_crops_are_128x64_jpeg(tiny_world):
    for path in list((tiny_world.market_root / "query").iterdir())[:10]:
        assert path.read_bytes()[:2] == b"\xff\xd8"
        assert cv2.imread(str(path)).shape == (128, 64, 3)


def test_market_attribute_mat_layout(tiny_world):
    root = tiny_world.market_root
    mat = scipy.io.loadmat(root / "market_attribute.mat")
    top = mat["market_attribute"]
    assert top.shape == (1, 1) and top.dtype.names == ("train", "test")
    m = _market(tiny_world)
    ids = {"train": sorted({p for p, _, _ in m["bounding_box_train"]}),
           "test": sorted({p for p, _, _ in m["bounding_box_test"] if p > 0})}
    fields = {}
    for part in ("train", "test"):
        s = top[part][0, 0]
        assert s.shape == (1, 1)
        fields[part] = s.dtype.names
        index = s["image_index"][0, 0]
        assert index.shape == (1, len(ids[part]))
        pids = [str(x[0]) for x in index[0]]
        assert pids == sorted(pids) and all(len(p) == 4 for p in pids)
        assert [int(p) for p in pids] == ids[part]
        for name in s.dtype.names:
            if name == "image_index":
                continue
            v = s[name][0, 0]
            assert v.shape == (1, len(pids)) and v.dtype == np.uint8, name
            assert set(np.unique(v)) <= ({1, 2, 3, 4} if name == "age" else {1, 2}), name
        for group in (["up" + c for c in UP_COLOURS], ["down" + c for c in DOWN_COLOURS]):
            yes = sum((s[g][0, 0] == 2).astype(int) for g in group)
            assert yes.max() <= 1
    assert set(fields["train"]) == set(fields["test"])
    assert len(fields["train"]) == 28 and fields["train"] != fields["test"]


def test_mpii_mat_and_json(tiny_world):
    root = tiny_world.mpii_root
    rel = scipy.io.loadmat(root / "mpii_human_pose_v1_u12_1.mat")["RELEASE"][0, 0]
    annolist, img_train = rel["annolist"], rel["img_train"]
    n = annolist.shape[1]
    assert annolist.shape == (1, n) and img_train.shape == (1, n)
    assert rel["single_person"].shape == (n, 1)
    valid = (root / "annot" / "valid_images.txt").read_text().split()
    records = {s: json.loads((root / "annot" / f).read_text())
               for s, f in (("train", "train.json"), ("val", "valid.json"))}
    assert valid and {r["image"] for r in records["val"]} <= set(valid)
    assert not {r["image"] for r in records["train"]} & set(valid)
    by_image = defaultdict(list)
    for r in records["train"] + records["val"]:
        by_image[r["image"]].append(r)
    n_points = 0
    for i in range(n):
        entry = annolist[0, i]
        name = str(entry["image"][0, 0]["name"][0])
        h, w = cv2.imread(str(root / "images" / name)).shape[:2]
        rects = entry["annorect"]
        if not img_train[0, i]:
            assert set(rects.dtype.names) == {"scale", "objpos"} and name not in by_image
            continue
        singles = rel["single_person"][i, 0].ravel().astype(int)
        for r in range(rects.shape[1]):
            rect = rects[0, r]
            pts = rect["annopoints"][0, 0]["point"]
            xy = np.full((16, 2), -1.0)
            for k in range(pts.shape[1]):
                p = pts[0, k]
                jid = int(p["id"][0, 0])
                xy[jid] = (p["x"][0, 0], p["y"][0, 0])
                assert 1 <= xy[jid, 0] <= w and 1 <= xy[jid, 1] <= h  # 1-based, inside
                assert int(p["is_visible"][0, 0]) in (0, 1)
                n_points += 1
            assert rect["x1"][0, 0] < rect["x2"][0, 0] and rect["y1"][0, 0] < rect["y2"][0, 0]
            assert rect["scale"][0, 0] > 0.3
            if r + 1 in singles:
                match = [j for j in by_image[name]
                         if np.allclose(j["center"], [rect["objpos"][0, 0]["x"][0, 0],
                                                      rect["objpos"][0, 0]["y"][0, 0]])]
                assert len(match) == 1
                assert np.allclose(np.array(match[0]["joints"]), xy)
                assert match[0]["joints_vis"] == [int(v) for v in (xy[:, 0] > 0)]
    assert n_points > 300
    missing = sum(v == 0 for r in records["train"] for v in r["joints_vis"])
    assert missing > 0  # some joints truncated at the borders


def test_lip_layout_csv_and_masks(tiny_world):
    root = tiny_world.lip_root
    for split, n in (("train", 40), ("val", 20)):
        ids = (root / "TrainVal_images" / f"{split}_id.txt").read_text().split()
        assert len(ids) == n
        rows = list(csv.reader((root / "TrainVal_pose_annotations" /
                                f"lip_{split}_set.csv").open()))
        assert [r[0] for r in rows] == [i + ".jpg" for i in ids]
        assert all(len(r) == 49 for r in rows)
        assert any("nan" in r for r in rows)
        for row, image_id in zip(rows, ids, strict=True):
            img = cv2.imread(str(root / "TrainVal_images" / f"{split}_images" / f"{image_id}.jpg"))
            mask = cv2.imread(str(root / "TrainVal_parsing_annotations" / f"{split}_segmentations"
                                  / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
            assert mask.ndim == 2 and mask.dtype == np.uint8 and mask.shape == img.shape[:2]
            # the person's labelled parts fill the crop (bags are background, as LIP labels
            # them, and at their real size take a share of it)
            assert mask.max() < 20 and (mask > 0).mean() > 0.08
            vals = np.array(row[1:], dtype=object).reshape(16, 3)
            for x, y, v in vals:
                if x == "nan":
                    assert y == "nan" and v == "nan"
                else:
                    assert 0 <= int(x) < img.shape[1] and 0 <= int(y) < img.shape[0]
                    assert v in ("0", "1")


def test_contact_sheet(tiny_world, tmp_path):
    from personkit.synth import contact_sheet

    path = contact_sheet(tiny_world.out_dir, tmp_path / "sheet.png")
    sheet = cv2.imread(str(path))
    assert sheet.shape[1] == 1400 and sheet.shape[0] > 800


@pytest.mark.slow  # ~4 s: renders a set to watch its bar; make test's time
def test_synth_shows_its_progress(tmp_path, capsys):
    """Rendering takes a while: a bar counts the images (issue #23, item 9)."""
    from personkit.cli import main

    assert main(["synth", "--preset", "tiny", "--out", str(tmp_path / "w")]) == 0
    captured = capsys.readouterr()
    assert "synth: 100%" in captured.err and "wrote" in captured.out
