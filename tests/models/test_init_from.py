"""``model.init_from``: load exactly the chosen parts of an earlier run (Table 7's MPII ->
Market fine-tuning), report loaded/new parts, reject incompatible architectures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from engine_utils import tiny_config  # noqa: E402

from personkit.config import config_from_dict  # noqa: E402
from personkit.engine.build import build_trainer  # noqa: E402
from personkit.models import WeightsError  # noqa: E402
from personkit.models.init_from import init_from  # noqa: E402

REID_ONLY = [{"name": "reid", "type": "fake", "tasks": ["reid", "id"], "sampler": "pk",
              "pk_p": 4, "pk_k": 2, "input_size": [64, 32],
              "options": {"num_ids": 8, "images_per_id": 2}}]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A four-task run's exported weights (untrained: only the keys and values matter)."""
    run = tmp_path_factory.mktemp("source")
    trainer = build_trainer(config_from_dict(tiny_config()), run, progress=False)
    trainer.export_weights()
    return run, trainer.model.state_dict()


def _finetune(source, run_dir, **model):
    cfg = config_from_dict(tiny_config({"seed": 1}, datasets=REID_ONLY,  # another init
                                       heads=["reid", "id", "pose"], init_from=str(source),
                                       **model))
    return build_trainer(cfg, run_dir, progress=False)


def test_loads_exactly_the_included_parts(source_run, tmp_path, recwarn):
    run, src = source_run
    trainer = _finetune(run, tmp_path, init_include=["backbone.*", "heads.pose.*"],
                        keep_untrained_heads=True)
    state = trainer.model.state_dict()
    loaded = [k for k in state if k.startswith(("backbone.", "heads.pose."))]
    assert loaded and all(torch.equal(state[k], src[k]) for k in loaded)
    assert not torch.equal(state["heads.id.fc.weight"], src["heads.id.fc.weight"])
    report = json.loads((tmp_path / "init_report.json").read_text())
    assert set(report["loaded"]) == {"backbone", "heads.pose"}
    assert sum(report["loaded"].values()) == len(loaded)
    assert set(report["not_selected"]) == {"heads.id"} and report["new"] == {}
    assert report["source"].endswith("model.safetensors") and len(report["sha256"]) == 64
    assert any("'pose' has no training labels" in str(w.message) for w in recwarn)


def test_exclude_and_new_and_skipped_parts(source_run, tmp_path):
    run, _ = source_run
    model = _finetune(run, tmp_path, init_exclude=["heads.id.*"],
                      keep_untrained_heads=True).model
    report = init_from(model, run, exclude=["heads.id.*"])
    assert set(report.loaded) == {"backbone", "heads.pose"}  # heads.reid has no weights
    assert set(report.skipped) == {"fpn", "heads.attributes", "heads.segmentation"}
    assert set(report.not_selected) == {"heads.id"}


def test_untrained_head_is_an_error_unless_kept(source_run, tmp_path):
    with pytest.raises(ValueError, match="keep_untrained_heads"):
        _finetune(source_run[0], tmp_path)


def test_new_head_is_reported_new(source_run, tmp_path):
    cfg = config_from_dict(tiny_config(heads=["reid", "id", "pose"], datasets=REID_ONLY,
                                       keep_untrained_heads=True))
    model = build_trainer(cfg, tmp_path / "a", progress=False).model
    torch.save({"model": {k: v for k, v in model.state_dict().items()
                          if not k.startswith("heads.pose")}}, tmp_path / "reid.pt")
    report = init_from(model, tmp_path / "reid.pt")
    assert set(report.new) == {"heads.pose"} and "backbone" in report.loaded


def test_incompatible_architecture_names_the_keys(source_run, tmp_path):
    run, _ = source_run
    with pytest.raises(WeightsError, match=r"shape.*heads\.id\.fc\.weight"):
        _finetune(run, tmp_path, num_ids=12, keep_untrained_heads=True)
    with pytest.raises(WeightsError, match=r"backbone\.layer"):
        _finetune(run, tmp_path / "b", backbone={"name": "resnet18", "norm": "group"},
                  keep_untrained_heads=True)
    with pytest.raises(FileNotFoundError, match="model.init_from"):
        _finetune(tmp_path / "nothing", tmp_path / "c", keep_untrained_heads=True)


def test_a_corrupt_newest_checkpoint_is_skipped(source_run, tmp_path):
    """A run dir without model.safetensors: the newest *valid* checkpoint, as every loader
    resolves it (issue #22, item 11)."""
    run, _ = source_run
    trainer = build_trainer(config_from_dict(tiny_config()), tmp_path / "ckpts", progress=False)
    trainer.save()  # step 0
    older = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.step = 1
    with torch.no_grad():
        trainer.model.heads["pose"].conv.weight.add_(1.0)
    newest = trainer.save()
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    model = _finetune(tmp_path / "ckpts", tmp_path / "ft", keep_untrained_heads=True).model
    with pytest.warns(UserWarning, match="skipping unusable checkpoint"):
        report = init_from(model, tmp_path / "ckpts", include=["heads.pose.*"])
    assert report.source.endswith("step_00000000.pt")
    assert torch.equal(model.state_dict()["heads.pose.conv.weight"],
                       older["heads.pose.conv.weight"])
