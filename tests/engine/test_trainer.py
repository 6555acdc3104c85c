"""End-to-end training on the in-process fake data."""

import json

import pytest
import torch
from engine_utils import tiny_config

from personkit.config import config_from_dict
from personkit.engine.build import build_trainer
from personkit.engine.lr import lr_factor
from personkit.models.loading import load_model

ALL_TASKS = {"name": "all", "type": "fake", "sampler": "pk", "pk_p": 4, "pk_k": 2,
             "tasks": ["reid", "id", "attributes", "pose", "segmentation"],
             "input_size": [64, 32], "options": {"num_ids": 8, "images_per_id": 2}}


def test_twenty_steps_lower_the_total_loss(tmp_path):
    cfg = config_from_dict(tiny_config({"iterations": 20, "checkpoint_every": 10}, [ALL_TASKS],
                                       fpn_channels=32, seg_channels=16))
    trainer = build_trainer(cfg, tmp_path, progress=False)
    history = trainer.train()
    losses = [r["loss"] for r in history]
    assert len(losses) == 20
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 21))
    assert {"loss_reid", "loss_id", "loss_attributes", "loss_pose", "loss_segmentation",
            "lr"} <= set(records[0])
    assert any((tmp_path / "tb").iterdir())
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["step_00000010.pt", "step_00000020.pt"]
    state = torch.load(tmp_path / "checkpoints" / ckpts[-1], weights_only=True)
    assert state["step"] == 20 and state["meta"]["input_size"] == (64, 32)
    assert {"model", "optimizer", "scheduler", "config"} <= set(state)
    model = load_model(tmp_path)  # the safetensors export, with its config and metadata
    assert model.meta == trainer.model.meta
    for key, value in model.state_dict().items():
        assert torch.equal(value, trainer.model.state_dict()[key]), key


def test_lr_schedules():
    assert lr_factor(0.4, "exp", decay_start=0.5) == 1.0
    assert lr_factor(1.0, "exp", decay_start=0.5, final_factor=0.001) == pytest.approx(0.001)
    assert lr_factor(0.75, "exp", decay_start=0.5) == pytest.approx(0.001 ** 0.5)
    assert lr_factor(0.6, "multistep", milestones=(0.5, 0.8), gamma=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown LR schedule"):
        lr_factor(0.1, "cosine")


def test_without_a_progress_bar_a_status_line_says_the_run_is_alive(capsys):
    """``--no-progress`` (a study, a log file) still shows step, loss, speed and time left
    (issue #23, item 9)."""
    from personkit.engine.trainer import _Status

    status = _Status(0, 10, enabled=True, every_s=0.0)
    status.update(4, {"loss": 1.25})
    line = capsys.readouterr().out
    assert line.startswith("train: step 4/10 (40 %), loss 1.250,") and "min left" in line
    _Status(0, 10, enabled=False, every_s=0.0).update(4, {"loss": 1.0})
    assert capsys.readouterr().out == ""
