"""Bad input never loses the run: non-finite losses, out of memory, bad images and configs
that cannot work (rejected before the model is built)."""

from __future__ import annotations

import importlib.util
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from engine_utils import read_log, tiny_config, write_config

from personkit.cli import main as cli_main
from personkit.config import config_from_dict
from personkit.engine.build import build_trainer
from personkit.engine.preflight import check_heads_trained, check_labels
from personkit.engine.trainer import Trainer, TrainingError

_spec = importlib.util.spec_from_file_location(
    "native_writers", Path(__file__).parents[1] / "data" / "native.py")
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)


def test_nonfinite_losses_are_skipped_counted_logged_and_stop_the_run(tmp_path, monkeypatch,
                                                                     capsys):
    """NaN images at steps 2, 3 (skipped, the run goes on) and from step 5 on: the third NaN
    in a row (step 7) stops the run with a clear message."""
    seen: dict[int, torch.Tensor] = {}
    next_batch = Trainer._next_batch

    def poisoned(self, name):
        batch = next_batch(self, name)
        seen[self.step + 1] = next(self.model.parameters()).detach().clone()  # stem conv
        if self.step + 1 in (2, 3) or self.step + 1 >= 5:
            batch["image"] = torch.full_like(batch["image"], float("nan"))
        return batch

    monkeypatch.setattr(Trainer, "_next_batch", poisoned)
    cfg = tiny_config({"iterations": 10, "max_nonfinite_steps": 3, "checkpoint_every": 0})
    config = write_config(tmp_path / "nan.yaml", cfg)
    code = cli_main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "3 non-finite losses in a row (the last at step 7" in err
    assert "step 2: non-finite ['loss'" in err and "1 in all" in err
    log = read_log(tmp_path / "run")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert [r.get("skipped", False) for r in log] == [False, True, True, False, True, True]
    assert [r.get("skipped_steps") for r in log if r.get("skipped")] == [1, 2, 3, 4]
    assert "loss" in log[3] and "loss" not in log[1]
    assert torch.equal(seen[2], seen[4])  # the skipped steps did not touch the weights
    assert not torch.equal(seen[4], seen[5])


def test_out_of_memory_names_the_dataset_and_suggests_settings(tmp_path, monkeypatch):
    trainer = build_trainer(config_from_dict(tiny_config({"iterations": 2})), tmp_path,
                            progress=False)

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(trainer.model, "forward", oom)
    with pytest.raises(TrainingError) as e:
        trainer.train()
    message = str(e.value)
    first = trainer.schedule.dataset_at(0)
    assert f"dataset {first!r}" in message and "images of 64x32 per process" in message
    assert "batch_size" in message and "pk_p" in message and "train.amp" in message
    assert isinstance(e.value.__cause__, torch.OutOfMemoryError)


def _reject(tmp_path, capsys, cfg) -> str:
    """Run `personkit train` on ``cfg``; it must fail with one line before building a model."""
    config = write_config(tmp_path / "bad.yaml", cfg)
    code = cli_main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "log.jsonl").exists()
    return err


def test_pk_sampler_asking_for_more_identities_than_the_dataset_has(tmp_path, capsys):
    cfg = tiny_config()
    cfg["data"]["train"][0]["pk_p"] = 10  # the fake ReID set has 8 identities
    err = _reject(tmp_path, capsys, cfg)
    assert "dataset 'reid'" in err and "P=10" in err and "only 8 identities" in err


def test_head_without_a_training_dataset(tmp_path, capsys):
    cfg = tiny_config()
    cfg["data"]["train"][1]["tasks"] = ["pose"]  # nothing trains segmentation any more
    err = _reject(tmp_path, capsys, cfg)
    assert "model head 'segmentation' has no training labels" in err
    assert "reid: ['reid', 'id', 'attributes']; body: ['pose']" in err


def test_label_checks():
    class NoJoints(torch.utils.data.Dataset):
        keys = ("pid", "camid")

        def __len__(self):
            return 1

    with pytest.raises(ValueError, match=r"dataset 'x': task 'pose' needs the labels \['joints'"):
        check_labels("x", NoJoints(), ("reid", "pose"))
    check_labels("x", NoJoints(), ("reid", "id"))
    check_heads_trained(("reid", "id"), {"market": ("id",)})  # ID labels train the embedding
    with pytest.raises(ValueError, match="head 'attributes'"):
        check_heads_trained(("reid", "attributes"), {"market": ("reid",)})


def _market(tmp_path: Path, corrupt: bool = False) -> dict:
    names = [f"{pid:04d}_c{cam}s1_000{cam}51_01.jpg" for pid in (2, 7, 10, 11) for cam in (1, 2)]
    root = native.write_reid_folders(tmp_path / "market", {"bounding_box_train": names},
                                     height=64, width=32)
    if corrupt:
        (root / "bounding_box_train" / names[3]).write_bytes(b"not a jpeg")
    return {"name": "market", "type": "market1501", "root": str(root), "tasks": ["reid"],
            "sampler": "pk", "pk_p": 2, "pk_k": 2, "input_size": [64, 32],
            "options": {"attributes": False}}


def test_task_whose_labels_the_dataset_lacks(tmp_path, capsys):
    cfg = tiny_config(datasets=[{**_market(tmp_path), "tasks": ["reid", "pose"]}],
                      heads=["reid", "pose"])
    err = _reject(tmp_path, capsys, cfg)
    assert "dataset 'market'" in err and "pose" in err and "joints" in err


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_corrupt_images_follow_the_readers_policy(tmp_path, capsys, policy):
    """Two steps of P=2, K=2 over 4 identities with 2 images each read every image once."""
    cfg = tiny_config({"iterations": 2}, [_market(tmp_path, corrupt=True)], heads=["reid"])
    cfg["data"]["on_bad_image"] = policy
    config = write_config(tmp_path / "c.yaml", cfg)
    with pytest.warns(RuntimeWarning, match="0007_c2s1") if policy == "skip" else nullcontext():
        code = cli_main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    if policy == "skip":
        assert code == 0 and [r["step"] for r in read_log(tmp_path / "run")] == [1, 2]
    else:
        assert code == 2 and "0007_c2s1_000251_01.jpg" in err

