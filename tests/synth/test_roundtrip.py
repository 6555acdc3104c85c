"""The native readers (personkit.data.datasets) read the synthetic world back faithfully."""

from __future__ import annotations

import json

import numpy as np
import pytest

from personkit.data.constants import IGNORE_INDEX
from personkit.data.io import read_image, read_mask
from personkit.synth.appearance import get_identity

datasets = pytest.importorskip("personkit.data.datasets")


def test_market_roundtrip(tiny_world):
    counts = tiny_world.counts
    train = datasets.read_market1501(tiny_world.out_dir, "train")
    query = datasets.read_market1501(tiny_world.out_dir, "query")
    gallery = datasets.read_market1501(tiny_world.out_dir, "gallery")
    assert len(train) == counts["market_train_images"]
    assert len(query) == counts["market_query_images"]
    assert len(gallery) == counts["market_gallery_images"]
    assert {r.camid for r in train + query + gallery} <= set(range(6))
    known = [r for r in train + query + gallery if r.pid > 0]
    for r in known[::7]:
        attrs = get_identity(0, r.pid).market_attributes()
        assert r.attributes[0] == attrs["gender"] - 1
        assert r.attributes[1] == attrs["age"] - 1
    assert all((r.attributes == IGNORE_INDEX).all() for r in gallery if r.pid <= 0)
    assert all((r.attributes[:10] >= 0).all() for r in known)


def test_mpii_mat_and_json_readers_agree(tiny_world):
    root = tiny_world.mpii_root
    for split, json_name in (("train", "train.json"), ("val", "valid.json")):
        from_mat = datasets.read_mpii(root, split)
        from_json = datasets.read_mpii(root, split, annotation_file=root / "annot" / json_name)
        assert len(from_mat) == len(from_json) == len(json.loads((root / "annot" / json_name)
                                                                 .read_text()))
        key = lambda r: (r.image_path.name, r.center)
        for a, b in zip(sorted(from_mat, key=key), sorted(from_json, key=key), strict=True):
            assert a.image_path == b.image_path
            np.testing.assert_allclose(a.joints, b.joints, atol=0.02)
            assert (a.joints_annotated == b.joints_annotated).all()
            assert a.head_size == pytest.approx(b.head_size, abs=0.05) and a.head_size > 5
            assert a.scale == pytest.approx(b.scale)
        for r in from_mat[:5]:
            h, w = read_image(r.image_path).shape[:2]
            ok = r.joints_annotated
            assert (r.joints[ok] >= 0).all() and (r.joints[ok, 0] <= w - 1).all()
            assert (r.joints[ok, 1] <= h - 1).all()
    val = datasets.read_mpii(root, "val")
    assert {r.image_path.name for r in val} <= set((root / "annot" / "valid_images.txt")
                                                   .read_text().split())


def test_lip_roundtrip(tiny_world):
    for split, n in (("train", 40), ("val", 20)):
        records = datasets.read_lip(tiny_world.lip_root, split)
        assert len(records) == n
        for r in records[:8]:
            image, mask = read_image(r.image_path), read_mask(r.mask_path)
            assert image.shape[:2] == mask.shape
            ok = r.joints_annotated & ~r.joints_occluded
            xy = np.round(r.joints[ok]).astype(int)
            body = mask > 0
            near = [body[max(0, y - 2):y + 3, max(0, x - 2):x + 3].any() for x, y in xy]
            assert all(near)
            assert r.head_size > 5
