"""Labels agree with pixels, attributes with identities, images of one id with each other."""

from __future__ import annotations

import csv
from collections import defaultdict

import cv2
import numpy as np
import scipy.io

from personkit.synth.appearance import get_identity, sample_identity
from personkit.synth.items import SceneItem, lip_scene, mpii_scene
from personkit.synth.render import JOINT_OWNERS


def test_lip_visible_joints_lie_on_the_body_mask(tiny_world):
    root = tiny_world.lip_root
    checked = 0
    for split in ("train", "val"):
        rows = csv.reader((root / "TrainVal_pose_annotations" / f"lip_{split}_set.csv").open())
        for row in rows:
            mask = cv2.imread(str(root / "TrainVal_parsing_annotations" /
                                  f"{split}_segmentations" / (row[0][:-4] + ".png")),
                              cv2.IMREAD_UNCHANGED)
            body = cv2.dilate((mask > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            vals = np.array(row[1:], dtype=object).reshape(16, 3)
            for x, y, v in vals:
                if x != "nan" and v == "0":
                    assert body[int(y), int(x)], row[0]
                    checked += 1
    assert checked > 500


def test_masks_cover_exactly_the_drawn_person():
    for i in range(12):
        sc = lip_scene(SceneItem(i, "x.jpg", "train"), seed=0)
        r = sc.rendered
        drawn = np.abs(r.image.astype(int) - sc.background.astype(np.uint8).astype(int)).max(2) > 0
        person = r.labels > 0
        # Every labelled pixel and every bag/object pixel is painted over the background ...
        assert (~drawn & (r.ids > 0)).sum() <= 0.01 * (r.ids > 0).sum()
        # ... and nothing outside the person and its bags/objects differs from the background.
        assert not (drawn & ~person & ~r.bag_mask).any()
        assert person.sum() > 0.1 * person.size


def test_mpii_visible_joints_sit_on_their_own_person():
    checked = 0
    for i in range(10):
        r = mpii_scene(SceneItem(i, "x.jpg", "train"), seed=0).rendered
        h, w = r.ids.shape
        part = [None] + [(p.person, p.group) for p in r.prims]
        for k, (joints, occl) in enumerate(zip(r.joints, r.occluded, strict=True)):
            for j, ((x, y), o) in enumerate(zip(joints, occl, strict=True)):
                xi, yi = int(round(x)), int(round(y))
                if o or not (0 <= xi < w and 0 <= yi < h):
                    continue
                win = r.ids[max(0, yi - 1):yi + 2, max(0, xi - 1):xi + 2].ravel()
                assert any(part[v] and part[v][0] == k and part[v][1] in JOINT_OWNERS[j]
                           for v in win), (i, k, j)
                checked += 1
    assert checked > 150


def test_attributes_match_identities(tiny_world):
    mat = scipy.io.loadmat(tiny_world.market_root / "market_attribute.mat")["market_attribute"]
    for part in ("train", "test"):
        s = mat[part][0, 0]
        pids = [int(x[0]) for x in s["image_index"][0, 0][0]]
        for col, pid in enumerate(pids):
            expected = get_identity(0, pid).market_attributes()
            got = {n: int(s[n][0, 0][0, col]) for n in s.dtype.names if n != "image_index"}
            assert got == expected


def test_images_of_an_identity_share_clothing_colours(tiny_world):
    feats = defaultdict(list)
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        for p in sorted((tiny_world.market_root / folder).glob("*.jpg")):
            pid = int(p.name.split("_")[0])
            if pid > 0:
                img = cv2.imread(str(p))[:, :, ::-1].astype(float)
                feats[pid].append(np.median(img[34:56, 26:38].reshape(-1, 3), 0))
    centres = {p: np.mean(f, 0) for p, f in feats.items()}
    intra, inter = [], []
    for p, fs in feats.items():
        for f in fs:
            intra.append(np.linalg.norm(f - centres[p]))
            inter.append(np.mean([np.linalg.norm(f - c) for q, c in centres.items() if q != p]))
    assert np.mean(intra) < 0.5 * np.mean(inter)


def test_identity_sampler_correlations():
    ids = [sample_identity(np.random.default_rng([5, i]), i) for i in range(600)]
    attrs = [i.market_attributes() for i in ids]
    female = np.array([a["gender"] == 2 for a in attrs])
    long_hair = np.array([a["hair"] == 2 for a in attrs])
    dress = np.array([a["clothes"] == 1 for a in attrs])
    assert 0.3 < female.mean() < 0.55
    assert long_hair[female].mean() > 0.6 > 0.15 > long_hair[~female].mean()
    assert dress[female].mean() > 0.3 and dress[~female].mean() == 0
    for name in ("age", "up", "down", "hat", "backpack", "bag", "handbag"):
        assert len({a[name] for a in attrs}) == (4 if name == "age" else 2), name
    no_up = [a for a in attrs if not any(a["up" + c] == 2 for c in
                                         ("black", "white", "red", "purple", "yellow", "gray",
                                          "blue", "green"))]
    assert 0 < len(no_up) < 0.15 * len(attrs)  # a few identities have no colour labelled
