"""Checkpoints and resume: a SIGKILLed run resumes to the same weights; corrupt files, atomic
writes, keep-N and strict, pickle-safe loading."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from engine_utils import (
    SUBPROCESS_ENV,
    read_log,
    tiny_config,
    write_config,
)

from personkit import checkpoint as ckpt
from personkit.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    read_weights,
)
from personkit.cli import main as cli_main
from personkit.config import config_from_dict
from personkit.engine.build import build_trainer
from personkit.models import WeightsError

# Runs `personkit train ARGS` but stops before running step PAUSE + 1 and waits to be killed,
# so that the test kills it at a known point (between checkpoints) without racing it.
_PAUSING_TRAIN = r"""
import sys, time
from pathlib import Path
from personkit.cli import main
from personkit.engine.trainer import Trainer

pause, marker = int(sys.argv[1]), Path(sys.argv[2])
run_step = Trainer.run_step

def pausing_run_step(self, name, batch):
    if self.step == pause:
        marker.write_text(str(self.step))
        time.sleep(600)
    return run_step(self, name, batch)

Trainer.run_step = pausing_run_step
sys.exit(main(sys.argv[3:]))
"""


def _kill_at(tmp_path, config, out, pause):
    script = tmp_path / "pausing_train.py"
    script.write_text(_PAUSING_TRAIN)
    marker = tmp_path / "paused"
    cmd = [sys.executable, str(script), str(pause), str(marker), "train", str(config),
           "--out", out, "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=SUBPROCESS_ENV, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, f"training ended early:\n{proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "training did not reach the pause"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_sigkilled_run_resumes_to_the_same_weights(tmp_path, capsys):
    """12 steps of two interleaved datasets (all four tasks, BatchNorm heads, segmentation
    warm-up), checkpoints every 4 steps. A ``personkit train`` subprocess is SIGKILLed after
    step 10 and resumed with ``--resume auto`` from step 8 (in this process, to save a torch
    start-up); its final weights and its log equal an uninterrupted run's.
    """
    cfg = tiny_config({"iterations": 12, "checkpoint_every": 4, "deterministic": True},
                      num_ids=8)
    cfg["loss"]["seg_warmup_steps"] = 8
    cfg["loss"]["seg_top_k"] = 0.5
    config = write_config(tmp_path / "run.yaml", cfg)

    _kill_at(tmp_path, config, "killed", pause=10)
    run = tmp_path / "killed"
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == [
        "step_00000004.pt", "step_00000008.pt"]
    assert not (run / "model.safetensors").exists()
    assert cli_main(["train", str(config), "--out", str(run), "--resume", "auto",
                     "--no-progress"]) == 0
    assert f"resumed from {run / 'checkpoints' / 'step_00000008.pt'} at step 8" in (
        capsys.readouterr().out)

    reference = build_trainer(config_from_dict(cfg), tmp_path / "reference", progress=False)
    reference.train()
    resumed, _ = read_weights(run / "model.safetensors")
    expected, _ = read_weights(tmp_path / "reference" / "model.safetensors")
    assert resumed.keys() == expected.keys()
    # Bit for bit: both runs execute the same kernels on the same values (one thread in and
    # out of the subprocess, deterministic algorithms, the same batches from the restored
    # sampler and RNG states), so resuming is exact on every CPU, not merely close.
    for key in expected:
        assert torch.equal(resumed[key], expected[key]), key
    log, ref_log = read_log(run), read_log(tmp_path / "reference")
    assert [r["step"] for r in log] == list(range(1, 13))  # steps 9, 10 logged once
    for a, b in zip(log, ref_log, strict=True):
        assert (a["dataset"], a["loss"]) == (b["dataset"], b["loss"])
    assert {r["dataset"] for r in log} == {"reid", "body"}


def _trainer(tmp_path, **train):
    return build_trainer(config_from_dict(tiny_config(train)), tmp_path, progress=False)


def test_corrupt_or_unsafe_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    trainer = _trainer(tmp_path)
    for step in (2, 4, 6):
        trainer.step = step
        trainer.save()
    files = list_checkpoints(tmp_path / "checkpoints")
    files[-1].write_bytes(files[-1].read_bytes()[:1000])  # truncated by a full disk, say

    class Evil:  # a pickle that would run code: weights_only=True refuses it
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model": Evil()}, files[-2])
    with pytest.raises(CheckpointError, match="refuses to unpickle") as e:
        load_checkpoint(files[-2])
    assert str(files[-2]) in str(e.value) and "weights_only" not in str(e.value)
    fresh = _trainer(tmp_path)
    with pytest.warns(UserWarning, match="skipping unusable checkpoint") as caught:
        path = fresh.resume_latest()
    assert path == files[0] and fresh.step == 2
    warned = " ".join(str(w.message) for w in caught)
    assert files[-1].name in warned and files[-2].name in warned


def test_checkpoint_writes_are_atomic_and_keep_the_newest(tmp_path, monkeypatch):
    state = {"step": 0, "weights": torch.arange(4.0)}
    for step in range(1, 6):
        ckpt.save_checkpoint({**state, "step": step}, tmp_path, step, keep=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step_00000003.pt", "step_00000004.pt", "step_00000005.pt"]
    (tmp_path / ".tmp_killed_writer.pt").write_bytes(b"half a checkpoint")

    def dies_mid_write(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_mid_write)  # save_checkpoint imports it
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(state, tmp_path, 6, keep=3)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # no step 6, no temp files
        "step_00000003.pt", "step_00000004.pt", "step_00000005.pt"]
    assert load_checkpoint(tmp_path / "step_00000005.pt")["step"] == 5


def test_checkpoint_of_another_architecture_lists_the_mismatched_keys(tmp_path, capsys):
    trainer = _trainer(tmp_path / "r10t")
    path = trainer.save()
    other = tiny_config({"iterations": 2}, backbone={"name": "resnet34", "norm": "group"})
    wider = build_trainer(config_from_dict(other), tmp_path / "r34", progress=False)
    state = load_checkpoint(path)
    del state["config"]  # a checkpoint without its config: the weights are compared
    with pytest.raises(WeightsError) as e:
        wider.load_state_dict(state, source=str(path))
    message = str(e.value)
    assert str(path) in message and "missing keys" in message
    assert "backbone.layer1.2.conv1.weight" in message  # resnet34 has 3 blocks in layer1

    config = write_config(tmp_path / "r34.yaml", other)
    code = cli_main(["train", str(config), "--out", str(tmp_path / "r34"), "--resume", str(path),
                     "--no-progress"])
    err = capsys.readouterr().err  # the config names the difference before the weights do
    assert code == 2 and "model.backbone.name: 'resnet10t' -> 'resnet34'" in err


def test_resume_auto_on_a_new_run_starts_fresh_and_exports_safetensors(tmp_path, capsys):
    from safetensors import safe_open

    config = write_config(tmp_path / "c.yaml", tiny_config({"iterations": 1}))
    assert cli_main(["train", str(config), "--out", str(tmp_path / "run"), "--resume", "auto",
                     "--no-progress"]) == 0
    assert "resumed" not in capsys.readouterr().out
    assert [r["step"] for r in read_log(tmp_path / "run")] == [1]
    with safe_open(str(tmp_path / "run" / "model.safetensors"), framework="pt") as f:
        state = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000001.pt")
        assert set(f.keys()) == set(state["model"])
        assert {"config", "meta"} <= set(f.metadata())
