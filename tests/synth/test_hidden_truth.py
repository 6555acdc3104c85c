"""The hidden ground truth of the Market-like crops: readable as market_auto, aligned with the
pictures, and a yardstick for automatic annotations (personkit.metrics.annotations)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from personkit.cli import main
from personkit.data.datasets import read_market1501, read_market_auto
from personkit.data.datasets.market_auto import AutoAnnotation, read_auto_pose, write_market_auto
from personkit.data.io import read_image, read_mask
from personkit.metrics.annotations import score_annotations
from personkit.synth.world import HIDDEN_TRUTH_DIR


@pytest.fixture(scope="module")
def truth_dir(tiny_world):
    return tiny_world.market_root / HIDDEN_TRUTH_DIR


def test_truth_reads_back_as_market_auto(tiny_world, truth_dir):
    train = read_market_auto(tiny_world.out_dir, "train", annotations=truth_dir)
    plain = read_market1501(tiny_world.out_dir, "train")
    assert [r.image_path for r in train] == [r.image_path for r in plain]
    assert all(r.mask_path is not None and r.joints is not None for r in train)
    poses = read_auto_pose(truth_dir / "pose.csv")
    assert len(poses) == tiny_world.counts["market_truth_poses"]
    near_person = total = 0
    for r in train[::5]:
        mask = read_mask(r.mask_path)
        assert mask.shape == read_image(r.image_path).shape[:2] == (128, 64)
        # a person fills the crop (its bags, background as in LIP, take a share of it)
        assert mask.max() < 20 and (mask > 0).mean() > 0.12
        assert r.joints_annotated[7] and r.joints_annotated[8]  # the neck is in the crop
        for x, y in r.joints[r.joints_annotated]:
            xi, yi = int(round(x)), int(round(y))
            near_person += (mask[max(0, yi - 1):yi + 2, max(0, xi - 1):xi + 2] > 0).any()
            total += 1
    # joints lie on the labelled body, but for those a backpack covers (96 % on the tiny world
    # since bags have their real size; 97 % before)
    assert near_person >= 0.94 * total


def test_default_market_auto_does_not_read_the_truth(tiny_world):
    with pytest.raises(FileNotFoundError, match="auto_annotations"):
        read_market_auto(tiny_world.out_dir, "train")


def test_truth_scores_perfectly_against_itself(truth_dir):
    result = score_annotations(truth_dir, truth_dir)
    pose, parts = result["pose"], result["parts"]
    assert pose["Mean"] == 1.0 and pose["num_missing"] == 0
    # crops whose head top is cut off have no head size (skipped, as MPII/LIP persons)
    assert pose["num_skipped"] <= 0.05 * pose["num_images"]
    assert parts["mIoU5"] == 1.0 and parts["pixel_acc"] == 1.0
    present = [v for k, v in parts.items() if k.startswith("IoU/") and v > 0]
    assert len(present) >= 12 and set(present) == {1.0}
    # official mIoU: classes that never occur count as 0 (SCHP), so it is the share present
    assert parts["mIoU"] == pytest.approx(len(present) / 20)


def _perturbed_copy(truth_dir, out, shift: float, drop_every: int):
    poses = read_auto_pose(truth_dir / "pose.csv")
    rng = np.random.default_rng(0)
    rows = []
    for i, (image, (joints, _)) in enumerate(sorted(poses.items())):
        parts_png = truth_dir / "parts" / f"{image}.png"
        mask = read_mask(parts_png).copy()
        mask[:, : int(shift)] = 0  # lose a stripe on the left
        moved = joints + rng.normal(0, shift, joints.shape).astype(np.float32)
        rows.append(AutoAnnotation(image, None if i % drop_every == 0 else moved, None, mask))
    write_market_auto(out, rows)


def test_perturbed_annotations_score_lower(truth_dir, tmp_path):
    _perturbed_copy(truth_dir, tmp_path / "a", shift=2.0, drop_every=10)
    _perturbed_copy(truth_dir, tmp_path / "b", shift=6.0, drop_every=10)
    a = score_annotations(tmp_path / "a", truth_dir)
    b = score_annotations(tmp_path / "b", truth_dir)
    assert a["pose"]["num_missing"] > 0
    assert 0 < b["summary"]["PCKh@0.5"] < a["summary"]["PCKh@0.5"] < 0.95
    assert 0 < b["summary"]["mIoU5"] < a["summary"]["mIoU5"] < 1.0
    shutil.rmtree(tmp_path / "b" / "parts" / "bounding_box_train")
    gone = score_annotations(tmp_path / "b", truth_dir)["parts"]
    assert gone["num_missing"] == gone["num_images"] and gone["mIoU5"] < b["summary"]["mIoU5"]


def test_cli_score_annotations(truth_dir, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert main(["score-annotations", str(truth_dir), str(truth_dir), "--out", str(out)]) == 0
    assert "PCKh@0.5 1.0000" in capsys.readouterr().out
    assert json.loads(out.read_text())["summary"]["mIoU5"] == 1.0
    assert main(["score-annotations", str(tmp_path), str(truth_dir)]) == 2
