"""``personkit annotate``: automatic annotations in the market_auto format, and the round trip
annotate -> train on them -> evaluate on the tiny synthetic world (Table 5's setting)."""

from __future__ import annotations

import csv
import json
import shutil

import cv2
import numpy as np
import pytest

from personkit.checkpoint import save_weights, sha256_file
from personkit.cli import main
from personkit.config import config_from_dict, config_to_dict
from personkit.data.io import read_mask
from personkit.engine.build import build_trainer
from personkit.engine.evaluate import run_evaluation
from personkit.inference.annotate import letterbox_affine
from personkit.models.build import build_model

MARKET = "Market-1501-v15.09.15"
MODEL = {"backbone": {"name": "resnet10t", "norm": "group"}, "seg_classes": 20,
         "fpn_channels": 16, "seg_channels": 8, "input_size": [64, 64]}


def _config(world, heads, train, **model):
    return config_from_dict({
        "model": {**MODEL, "heads": heads, **model}, "data": {"root": str(world),
                                                              "num_workers": 0, "train": train},
        "train": {"iterations": 2, "lr": 1e-3, "device": "cpu", "checkpoint_every": 0},
    })


@pytest.fixture(scope="module")
def body_run(tiny_world_dir, tmp_path_factory):
    """A pose + 20-class parts model trained for two steps on the tiny LIP set."""
    run = tmp_path_factory.mktemp("body")
    lip = {"name": "lip", "type": "lip", "root": "LIP", "tasks": ["pose", "segmentation"],
           "batch_size": 4, "input_size": [64, 64], "augment": False}
    build_trainer(_config(tiny_world_dir, ["pose", "segmentation"], [lip]), run,
                  progress=False).train()
    return run


def _annotate(body_run, world, out, *extra):
    return main(["annotate", "--pose", str(body_run), "--parts", str(body_run),
                 "--root", str(world), "--out", str(out), "--no-progress", "--batch-size", "64",
                 *extra])


def test_letterbox_keeps_the_aspect_ratio_and_maps_back():
    a = letterbox_affine(128, 64, (64, 64))  # a 2:1 crop in a square input: 32 wide, centred
    corners = np.array([[-0.5, -0.5, 1], [63.5, 127.5, 1]]) @ a.T
    np.testing.assert_allclose(corners, [[15.5, -0.5], [47.5, 63.5]])


@pytest.mark.slow  # 20 s quiet; make test keeps annotate's --force and corrupt-checkpoint tests
def test_annotate_train_evaluate_round_trip(body_run, tiny_world_dir, tmp_path, capsys):
    out = tmp_path / "auto"
    assert _annotate(body_run, tiny_world_dir, out) == 0
    market = tiny_world_dir / MARKET
    crops = sorted((market / "bounding_box_train").glob("*.jpg"))
    with open(out / "pose.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert [r[0] for r in rows] == [f"bounding_box_train/{p.name}" for p in crops]
    conf = np.array([[float(c) for c in r[3::3]] for r in rows])
    assert ((conf >= 0) & (conf <= 1)).all()
    for crop in crops[:5]:
        mask = read_mask(out / "parts" / "bounding_box_train" / f"{crop.name}.png")
        assert mask.shape == cv2.imread(str(crop)).shape[:2] and mask.max() < 20
    manifest = json.loads((out / "manifest.json").read_text())
    weights = body_run / "model.safetensors"
    assert manifest["pose"]["sha256"] == sha256_file(weights) == manifest["parts"]["sha256"]
    assert manifest["images"] == len(crops) and manifest["flip"] is True  # the default

    # Deterministic: the same command finds the same annotations.
    before = (out / "pose.csv").read_bytes()
    assert _annotate(body_run, tiny_world_dir, out) == 0
    assert "unchanged" in capsys.readouterr().out and (out / "pose.csv").read_bytes() == before
    # Different options do not overwrite without --force.
    assert _annotate(body_run, tiny_world_dir, out, "--no-flip") == 2
    assert "--force" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["flip"]
    assert _annotate(body_run, tiny_world_dir, out, "--no-flip", "--force") == 0
    assert json.loads((out / "manifest.json").read_text())["flip"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto"]  # no temp folders left

    # Train on the annotations with no hand edits, then evaluate.
    auto = {"name": "market_auto", "type": "market_auto", "root": MARKET, "sampler": "pk",
            "tasks": ["reid", "id", "pose", "segmentation"], "pk_p": 4, "pk_k": 2,
            "input_size": [64, 32], "options": {"annotations": str(out)}}
    cfg = _config(tiny_world_dir, ["reid", "id", "pose", "segmentation"], [auto], num_ids=120,
                  input_size=[64, 32])
    cfg = config_from_dict({**config_to_dict(cfg), "data": {**config_to_dict(cfg.data), "eval": [
        {"name": "market", "type": "market1501", "root": MARKET, "tasks": ["reid"],
         "input_size": [64, 32]}]}})
    trainer = build_trainer(cfg, tmp_path / "run", progress=False)
    history = trainer.train()
    assert len(history) == 2 and all(np.isfinite(r["loss"]) for r in history)
    assert {"loss_pose", "loss_segmentation"} <= set(history[-1])
    results = run_evaluation(trainer.model, cfg, progress=False)
    assert 0 <= results["market"]["reid"]["mAP"] <= 1


def test_bad_inputs_leave_no_annotation_folder(body_run, tiny_world_dir, tmp_path, capsys):
    pose_only = build_model(_config(tiny_world_dir, ["pose"], []).model)
    save_weights(pose_only, tmp_path / "pose.safetensors",
                 config_to_dict(_config(tiny_world_dir, ["pose"], [])), pose_only.meta.to_dict())
    out = tmp_path / "auto"
    code = main(["annotate", "--pose", str(body_run), "--parts",
                 str(tmp_path / "pose.safetensors"), "--root", str(tiny_world_dir),
                 "--out", str(out), "--no-progress"])
    assert code == 2 and "--parts" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _annotate(body_run, tmp_path / "empty", out) == 2
    assert "bounding_box_train" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".tmp_*"))


def test_a_corrupt_newest_checkpoint_is_skipped_like_eval_does(tiny_world_dir, tmp_path):
    """A run dir without model.safetensors resolves to its newest *valid* checkpoint, for
    annotate as for eval and predict (one resolver: models/loading.resolve_model_file)."""
    run = tmp_path / "body"
    lip = {"name": "lip", "type": "lip", "root": "LIP", "tasks": ["pose", "segmentation"],
           "batch_size": 4, "input_size": [64, 64], "augment": False}
    cfg = config_from_dict({**config_to_dict(_config(tiny_world_dir, ["pose", "segmentation"],
                                                     [lip])),
                            "train": {"iterations": 2, "lr": 1e-3, "device": "cpu",
                                      "checkpoint_every": 1}})
    build_trainer(cfg, run, progress=False).train()
    (run / "model.safetensors").unlink()
    newest = run / "checkpoints" / "step_00000002.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped bit: the content hash no longer matches
    newest.write_bytes(bytes(data))
    out = tmp_path / "auto"
    with pytest.warns(UserWarning, match="skipping unusable checkpoint"):
        assert _annotate(run, tiny_world_dir, out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pose"]["weights"].endswith("step_00000001.pt")


def test_force_replaces_only_personkits_own_annotations(body_run, tiny_world_dir, tmp_path,
                                                        capsys):
    """--force never deletes a folder of the user's files or the dataset (issue #22, item 3)."""
    root = tmp_path / "world"
    shutil.copytree(tiny_world_dir / MARKET, root / MARKET)  # a dataset this test may lose
    mine = tmp_path / "my_files"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work")
    market = root / MARKET
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    for out in (mine, market, root):
        assert _annotate(body_run, root, out, "--force") == 2
        err = capsys.readouterr().err
        assert ("not a personkit annotation folder" in err or "Market root" in err), err
    assert (mine / "thesis.tex").read_text() == "months of work"
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    assert _annotate(body_run, root, tmp_path / "empty") == 0
