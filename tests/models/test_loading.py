"""One model loader: run dir, checkpoint or export -> the model, metadata checked against the
file's (the checkpoint is the one source of truth)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from personkit.checkpoint import save_checkpoint, save_weights
from personkit.config import BackboneConfig, Config, ModelConfig, config_to_dict
from personkit.models.build import build_model
from personkit.models.loading import load_model, load_model_and_config, stored_config

TINY = ModelConfig(backbone=BackboneConfig(name="resnet18", norm="group"),
                   heads=("reid", "attributes", "pose"), attributes={"gender": 2},
                   fpn_channels=16, seg_channels=8, input_size=(64, 32))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(TINY).eval()


def _config() -> dict:
    return config_to_dict(Config(model=TINY))


def test_export_checkpoint_and_run_dir_load_the_same_weights(model, tmp_path):
    save_weights(model, tmp_path / "export.safetensors", _config(), model.meta.to_dict())
    save_checkpoint({"model": model.state_dict(), "config": _config(),
                     "meta": model.meta.to_dict()}, tmp_path / "run" / "checkpoints", step=3)
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        expected = model(x).keypoints
        for source in (tmp_path / "export.safetensors", tmp_path / "run"):
            loaded, cfg = load_model_and_config(source)
            assert cfg.model.heads == TINY.heads and loaded.meta == model.meta
            torch.testing.assert_close(loaded(x).keypoints, expected, rtol=0, atol=0)


@pytest.mark.parametrize("change", [{"input_size": (128, 64)}, {"mean": (0.0, 0.0, 0.0)},
                                    {"joint_names": tuple("abcdefghijklmnop")}])
def test_stored_metadata_that_differs_from_the_rebuilt_model_is_an_error(model, tmp_path, change):
    meta = dataclasses.replace(model.meta, **change).to_dict()
    save_weights(model, tmp_path / "model.safetensors", _config(), meta)
    key = next(iter(change))
    with pytest.raises(ValueError, match=rf"model.safetensors.*{key}: stored"):
        load_model(tmp_path / "model.safetensors")
    save_checkpoint({"model": model.state_dict(), "config": _config(), "meta": meta},
                    tmp_path / "run" / "checkpoints", step=1)
    with pytest.raises(ValueError, match=rf"step_00000001.pt.*{key}: stored"):
        load_model(tmp_path / "run")


def test_run_dir_config_comes_from_its_model_file_else_its_config_yaml(model, tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"model": {"num_joints": 16}}))
    raw, where = stored_config(tmp_path)
    assert raw == {"model": {"num_joints": 16}} and where.endswith("config.yaml")
    save_weights(model, tmp_path / "model.safetensors", _config(), model.meta.to_dict())
    raw, where = stored_config(tmp_path)
    assert raw["model"]["heads"] == list(TINY.heads) and where.endswith("model.safetensors")
    with pytest.raises(FileNotFoundError, match="not found"):
        stored_config(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no model.safetensors, checkpoint or config"):
        stored_config(tmp_path / "empty")
