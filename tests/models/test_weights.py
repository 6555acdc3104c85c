"""Strict weight loading from local files, with the classifier mapped away explicitly."""

import pytest
import timm
import torch
from safetensors.torch import save_file

from personkit.models import ResNetBackbone, WeightsError


@pytest.fixture(scope="module")
def imagenet_like():
    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=10).state_dict()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_pretrained_file_loads_strictly(imagenet_like, tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(imagenet_like, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in imagenet_like.items()}}, path)
    backbone = ResNetBackbone("resnet18", "batch", pretrained=str(path))
    assert torch.equal(backbone.layer4[1].conv2.weight, imagenet_like["layer4.1.conv2.weight"])
    assert torch.equal(backbone.stem[0].weight, imagenet_like["conv1.weight"])


def test_mismatched_file_lists_keys(imagenet_like, tmp_path):
    state = dict(imagenet_like)
    state.pop("layer1.0.conv1.weight")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError) as err:
        ResNetBackbone("resnet18", "batch", pretrained=str(tmp_path / "bad.safetensors"))
    message = str(err.value)
    assert "missing keys (1): layer1.0.conv1.weight" in message
    assert "unexpected keys (1): extra.weight" in message


def test_group_norm_architecture_rejects_batch_norm_weights(imagenet_like, tmp_path):
    save_file(imagenet_like, str(tmp_path / "bn.safetensors"))
    with pytest.raises(WeightsError, match="running_mean"):
        ResNetBackbone("resnet18", "group", pretrained=str(tmp_path / "bn.safetensors"))


def test_missing_file_and_wrong_hub_tag_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        ResNetBackbone("resnet18", "batch", pretrained=str(tmp_path / "nothere.pth"))
    with pytest.raises(ValueError, match="architecture 'resnet50'"):
        ResNetBackbone("resnet18", "batch", pretrained="resnet50.a1_in1k")
