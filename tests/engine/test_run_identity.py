"""Run identity (issue 14, item 1): a new run in an old run's folder cannot destroy itself or
resume the old run; checkpoints are pruned per run; --overwrite moves, never deletes."""

from __future__ import annotations

import json

import torch
from engine_utils import read_log, tiny_config, write_config

from personkit.checkpoint import checkpoint_run_id, list_checkpoints, save_checkpoint
from personkit.cli import main as cli_main


def _names(folder):
    return [p.name for p in list_checkpoints(folder)]


def test_pruning_only_deletes_the_current_runs_checkpoints(tmp_path):
    for step in (56, 58, 60):
        save_checkpoint({"step": step, "run_id": "old"}, tmp_path, step, keep=3, run_id="old")
    save_checkpoint({"step": 2, "run_id": "new"}, tmp_path, 2, keep=1, run_id="new")
    save_checkpoint({"step": 4, "run_id": "new"}, tmp_path, 4, keep=1, run_id="new")
    assert _names(tmp_path) == ["step_00000004.pt", "step_00000056.pt", "step_00000058.pt",
                                "step_00000060.pt"]
    assert checkpoint_run_id(tmp_path / "step_00000004.pt") == "new"
    assert checkpoint_run_id(tmp_path / "step_00000060.pt") == "old"


def test_new_run_in_an_old_run_dir_refuses_then_overwrite_moves_the_old_run_aside(
        tmp_path, capsys):
    run = tmp_path / "run"
    old = write_config(tmp_path / "old.yaml", tiny_config({"iterations": 6,
                                                          "checkpoint_every": 2}))
    assert cli_main(["train", str(old), "--out", str(run), "--no-progress"]) == 0
    old_id = json.loads((run / "run.json").read_text())["run_id"]
    old_files = {p.name: p.read_bytes() for p in list_checkpoints(run / "checkpoints")}
    assert list(old_files) == ["step_00000002.pt", "step_00000004.pt", "step_00000006.pt"]
    assert all(checkpoint_run_id(p) == old_id for p in list_checkpoints(run / "checkpoints"))
    old_config = (run / "config.yaml").read_text()
    capsys.readouterr()

    # The scenario: a fresh run with checkpoints at steps the old run passed.
    new = write_config(tmp_path / "new.yaml", tiny_config({"iterations": 2, "checkpoint_every": 1,
                                                          "lr": 5e-4}))
    assert cli_main(["train", str(new), "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds checkpoints of another run" in err and old_id in err
    assert "--resume auto" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in list_checkpoints(run / "checkpoints")} == old_files
    assert (run / "config.yaml").read_text() == old_config  # nothing written

    assert cli_main(["train", str(new), "--out", str(run), "--overwrite", "--no-progress"]) == 0
    aside = run / f"checkpoints.old-{old_id}"
    assert {p.name: p.read_bytes() for p in list_checkpoints(aside)} == old_files
    assert (aside / "model.safetensors").is_file()
    new_id = json.loads((run / "run.json").read_text())["run_id"]
    assert new_id != old_id
    assert _names(run / "checkpoints") == ["step_00000001.pt", "step_00000002.pt"]
    assert "lr: 0.0005" in (run / "config.yaml").read_text()

    # --resume auto continues the NEW run (run longer), not the old one.
    longer = write_config(tmp_path / "longer.yaml", tiny_config(
        {"iterations": 3, "checkpoint_every": 1, "lr": 5e-4}))
    capsys.readouterr()
    assert cli_main(["train", str(longer), "--out", str(run), "--resume", "auto",
                     "--no-progress"]) == 0
    assert "step_00000002.pt at step 2" in capsys.readouterr().out
    assert json.loads((run / "run.json").read_text())["run_id"] == new_id
    log = read_log(run)
    assert [r["step"] for r in log if "event" not in r] == [1, 2, 3]
    assert [r["config_changes"] for r in log if "event" in r] == [{"train.iterations": [2, 3]}]
    final = torch.load(run / "checkpoints" / "step_00000003.pt", weights_only=True)
    assert final["run_id"] == new_id and final["step"] == 3


def test_resume_path_of_another_run_into_a_used_dir_is_refused(tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", tiny_config({"iterations": 2, "checkpoint_every": 1}))
    for name in ("a", "b"):
        assert cli_main(["train", str(cfg), "--out", str(tmp_path / name), "--no-progress"]) == 0
    capsys.readouterr()
    other = tmp_path / "a" / "checkpoints" / "step_00000001.pt"
    assert cli_main(["train", str(cfg), "--out", str(tmp_path / "b"), "--resume", str(other),
                     "--no-progress"]) == 2
    assert "holds checkpoints of another run" in capsys.readouterr().err
    own = tmp_path / "b" / "checkpoints" / "step_00000001.pt"  # its own run: allowed
    assert cli_main(["train", str(cfg), "--out", str(tmp_path / "b"), "--resume", str(own),
                     "--no-progress"]) == 0
