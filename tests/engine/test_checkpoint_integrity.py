"""Checkpoint integrity (issue 14, items 3 and 8): a flipped bit is caught by the content hash;
unreadable or malformed files are errors naming the file (skipped under --resume auto); an
unusable --out is a clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from engine_utils import tiny_config, write_config

from personkit.checkpoint import (
    CheckpointError,
    content_hash,
    list_checkpoints,
    load_checkpoint,
    read_weights,
)
from personkit.cli import main as cli_main
from personkit.config import config_from_dict
from personkit.engine.build import build_trainer
from personkit.models.loading import load_model

_STEM = "backbone.stem.0.0.weight"  # the first convolution (resnet10t's deep stem)


def _flip_bit_in(path: Path, tensor: torch.Tensor) -> None:
    """Flip one bit inside ``tensor``'s bytes as stored in ``path`` (a checkpoint keeps the
    storage in its memory order, channels_last included; safetensors in the logical order)."""
    data = bytearray(path.read_bytes())
    t = tensor.detach()
    storage = torch.empty(0, dtype=t.dtype).set_(t.untyped_storage())
    at = max(data.find(t.contiguous().numpy().tobytes()), data.find(storage.numpy().tobytes()))
    assert at >= 0, "tensor bytes not found in the file"
    data[at + 5] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.fixture
def trainer(tmp_path):
    return build_trainer(config_from_dict(tiny_config({"iterations": 1})), tmp_path / "run",
                         progress=False)


def test_content_hash_covers_every_value():
    state = {"model": {"w": torch.arange(4.0)}, "step": 3}
    h = content_hash(state)
    assert h == content_hash({"step": 3, "model": {"w": torch.arange(4.0)}})  # key order
    assert h != content_hash({"model": {"w": torch.arange(4.0) + 1e-7}, "step": 3})
    assert h != content_hash({"model": {"w": torch.arange(4.0)}, "step": 4})
    assert h != content_hash({"model": {"w": torch.arange(4.0).double()}, "step": 3})


def test_flipped_bit_in_a_checkpoint_is_corrupt_and_skipped_on_resume(trainer):
    for step in (2, 4):
        trainer.step = step
        trainer.save()
    newest = list_checkpoints(trainer.run_dir / "checkpoints")[-1]
    stem = trainer.model.state_dict()[_STEM]
    _flip_bit_in(newest, stem)
    with pytest.raises(CheckpointError, match="corrupt") as e:
        load_checkpoint(newest)
    assert str(newest) in str(e.value)
    with pytest.warns(UserWarning, match=f"skipping unusable checkpoint {newest}"):
        path = trainer.resume_latest()
    assert path.name == "step_00000002.pt" and trainer.step == 2


def test_flipped_bit_in_model_safetensors_is_an_error_naming_the_file(trainer, tmp_path,
                                                                      capsys):
    path = trainer.export_weights()
    state, header = read_weights(path)  # intact: loads, hash checked
    assert "content_sha256" not in header
    _flip_bit_in(path, state[_STEM])
    with pytest.raises(CheckpointError, match="corrupt") as e:
        read_weights(path)
    assert str(path) in str(e.value)
    with pytest.raises(CheckpointError):
        load_model(path)
    assert cli_main(["export", "--model", str(path), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "corrupt" in err and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, "truncated"])
def test_corrupt_pt_given_to_eval_export_or_predictor_names_the_file(trainer, tmp_path, capsys,
                                                                     content):
    from personkit.inference import Predictor

    bad = tmp_path / "bad.pt"
    if content == "truncated":
        good = trainer.save()
        bad.write_bytes(good.read_bytes()[:2000])
    else:
        bad.write_bytes(content)
    for argv in (["eval", "--model", str(bad)],
                 ["export", "--model", str(bad), "--onnx", str(tmp_path / "m.onnx")]):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert f"cannot read checkpoint {bad}" in err and "weights_only" not in err
    with pytest.raises(CheckpointError, match=str(bad)):
        Predictor.from_checkpoint(bad)


def test_wrong_structure_under_resume_auto_falls_back_to_the_previous_checkpoint(trainer,
                                                                                 capsys):
    for step in (2, 4):
        trainer.step = step
        trainer.save()
    newest = list_checkpoints(trainer.run_dir / "checkpoints")[-1]
    state = load_checkpoint(newest)
    del state["optimizer"]
    torch.save(state, newest)  # loads, but is no training checkpoint
    with pytest.warns(UserWarning, match=r"not a personkit training checkpoint.*'optimizer'"):
        path = trainer.resume_latest()
    assert path.name == "step_00000002.pt" and trainer.step == 2
    with pytest.raises(CheckpointError, match="'optimizer'"):
        trainer.load_state_dict(state, source=str(newest))


def test_no_usable_checkpoint_under_resume_auto_is_an_error_not_a_fresh_start(trainer):
    trainer.step = 2
    path = trainer.save()
    path.write_bytes(b"junk")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="none of the 1"):
        trainer.resume_latest()


def _train(tmp_path, out, capsys) -> str:
    config = write_config(tmp_path / "c.yaml", tiny_config({"iterations": 1}))
    assert cli_main(["train", str(config), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_out_that_is_a_file_or_under_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert "--out " + str(tmp_path / "f") + " is a file" in _train(tmp_path, tmp_path / "f",
                                                                    capsys)
    err = _train(tmp_path, tmp_path / "f" / "run", capsys)
    assert f"is under {tmp_path / 'f'}, which is a file" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_out(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert "cannot be written" in _train(tmp_path, ro / "run", capsys)
        assert "cannot be written" in _train(tmp_path, ro, capsys)
    finally:
        ro.chmod(0o700)


def test_unwritable_out_on_any_user(tmp_path, capsys, monkeypatch):
    import personkit.engine.rundir as rundir

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rundir.tempfile, "TemporaryFile", denied)
    err = _train(tmp_path, tmp_path / "run", capsys)
    assert f"--out {tmp_path / 'run'} cannot be written (in {tmp_path}) (Permission denied)" in err
    assert not (tmp_path / "run").exists()
