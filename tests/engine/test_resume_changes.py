"""Finite-only checkpoints and config changes on resume (issue 14, item 2)."""

from __future__ import annotations

import pytest
import torch
from engine_utils import read_log, tiny_config, write_config

from personkit.checkpoint import list_checkpoints
from personkit.cli import main as cli_main
from personkit.config import config_from_dict
from personkit.engine.build import build_trainer
from personkit.engine.lr import lr_factor
from personkit.engine.trainer import ResumeError, Trainer, TrainingError


def test_nonfinite_weights_are_never_checkpointed_and_the_run_fails(tmp_path, monkeypatch,
                                                                    capsys):
    """A weight turns NaN after step 3 while the loss stays finite (an unused output bias):
    the step-4 checkpoint is refused, the run exits 1, no model.safetensors is written."""
    run_step = Trainer.run_step

    def poisoning(self, name, batch):
        values = run_step(self, name, batch)
        if self.step + 1 == 3:
            model = getattr(self.model, "module", self.model)
            next(p for n, p in model.named_parameters() if n.endswith("bias")).data.fill_(
                float("inf"))
        return values

    monkeypatch.setattr(Trainer, "run_step", poisoning)
    config = write_config(tmp_path / "c.yaml", tiny_config({"iterations": 6,
                                                           "checkpoint_every": 2}))
    code = cli_main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "step 4: non-finite values in" in err and "not writing a checkpoint" in err
    assert "step_00000002.pt" in err
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == [
        "step_00000002.pt"]
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_nonfinite_optimizer_state_is_never_checkpointed(tmp_path):
    trainer = build_trainer(config_from_dict(tiny_config({"iterations": 1})), tmp_path,
                            progress=False)
    trainer.train()
    assert trainer.nonfinite_state() == []
    entry = next(iter(trainer.optimizer.state.values()))
    exp_avg_sq = entry["exp_avg_sq"]  # channels_last for conv weights: no flat view
    exp_avg_sq[(0,) * exp_avg_sq.dim()] = float("nan")
    with pytest.raises(TrainingError, match=r"optimizer\..*exp_avg_sq"):
        trainer.save()
    trainer.export_weights()  # the weights themselves are finite


def _first_run(tmp_path, capsys, **train):
    cfg = tiny_config({"iterations": 4, "checkpoint_every": 2, **train})
    config = write_config(tmp_path / "first.yaml", cfg)
    assert cli_main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    capsys.readouterr()
    return cfg


def test_resume_applies_a_new_lr_and_run_length_and_logs_them(tmp_path, capsys):
    schedule = {"type": "exp", "decay_start": 0.5, "final_factor": 0.01}
    cfg = _first_run(tmp_path, capsys, schedule=schedule)
    cfg["train"].update(lr=5e-4, iterations=8, log_every=2)
    trainer = build_trainer(config_from_dict(cfg), tmp_path / "run", progress=False)
    trainer.resume_latest()
    expected = 5e-4 * lr_factor(4 / 8, **{"kind": "exp", "decay_start": 0.5,
                                          "final_factor": 0.01})
    assert trainer.step == 4 and trainer.scheduler.base_lrs == [5e-4] * len(
        trainer.optimizer.param_groups)
    assert all(g["lr"] == pytest.approx(expected) for g in trainer.optimizer.param_groups)
    assert trainer.resume_changes == {"train.iterations": [4, 8], "train.lr": [1e-3, 5e-4],
                                      "train.log_every": [1, 2]}

    config = write_config(tmp_path / "second.yaml", cfg)
    assert cli_main(["train", str(config), "--out", str(tmp_path / "run"), "--resume", "auto",
                     "--no-progress"]) == 0
    log = read_log(tmp_path / "run")
    events = [r for r in log if r.get("event") == "resume"]
    assert events == [{"step": 4, "event": "resume", "config_changes": {
        "train.iterations": [4, 8], "train.lr": [1e-3, 5e-4], "train.log_every": [1, 2]}}]
    lrs = {r["step"]: r["lr"] for r in log if "lr" in r}
    for step in range(5, 9):  # the LR logged at each step follows the new base and length
        assert lrs[step] == pytest.approx(5e-4 * lr_factor((step - 1) / 8, "exp", 0.5, 1.0,
                                                           0.01))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 4-step run (checkpoints at 2 and 4), trained once for the refusal rows."""
    tmp = tmp_path_factory.mktemp("finished")
    cfg = tiny_config({"iterations": 4, "checkpoint_every": 2})
    config = write_config(tmp / "first.yaml", cfg)
    assert cli_main(["train", str(config), "--out", str(tmp / "run"), "--no-progress"]) == 0
    return cfg, tmp / "run"


@pytest.mark.parametrize(("change", "listed"), [
    ({"train": {"seed": 3}}, "train.seed: 0 -> 3"),
    ({"train": {"optimizer": "sgd"}}, "train.optimizer: 'adam' -> 'sgd'"),
    ({"model": {"num_ids": 9}}, "model.num_ids: 8 -> 9"),
    ({"loss": {"seg_top_k": 0.5}}, "loss.seg_top_k: 1.0 -> 0.5"),
])
def test_resume_refuses_other_changes_and_lists_them(tmp_path, capsys, finished_run, change,
                                                     listed):
    import copy
    import shutil

    cfg = copy.deepcopy(finished_run[0])
    shutil.copytree(finished_run[1], tmp_path / "run")
    capsys.readouterr()
    before = (tmp_path / "run" / "config.yaml").read_text()
    for section, values in change.items():
        cfg[section].update(values)
    config = write_config(tmp_path / "changed.yaml", cfg)
    code = cli_main(["train", str(config), "--out", str(tmp_path / "run"), "--resume", "auto",
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and listed in err and "cannot resume from" in err, err
    assert (tmp_path / "run" / "config.yaml").read_text() == before
    with pytest.raises(ResumeError):
        build_trainer(config_from_dict(cfg), tmp_path / "run", progress=False).resume_latest()
    assert torch.load(list_checkpoints(tmp_path / "run" / "checkpoints")[-1],
                      weights_only=True)["step"] == 4
