"""ResNet backbones from timm with the last stage at stride 1 (output stride 16).

Pfeiffer et al. (GCPR 2019, Sec. 3) use a ResNet-50 "with a stride of one in the last block,
doubling the output resolution", without dilation. Any timm ResNet-family model works
(resnet18/34/50/101, ``*d`` variants); ``norm`` picks GroupNorm (the paper's default),
BatchNorm or frozen BatchNorm. The backbone publishes the channels and strides of its four
stages (C2-C5) so that heads can size themselves.
"""

from __future__ import annotations

import math
from pathlib import Path

import timm
import torch
from timm.layers import freeze_batch_norm_2d
from torch import nn

from personkit.models.weights import load_state_dict_file, load_strict

NORMS = ("group", "batch", "frozen_batch")
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups (Wu & He, ECCV 2018), or fewer where the channels demand it
    (``gcd(32, C)``, e.g. 8 groups for the 24-channel stem of ``resnet10t``)."""

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True, **kwargs):
        super().__init__(math.gcd(32, num_channels), num_channels, eps=eps, affine=affine,
                         **kwargs)


def timm_arch(name: str, norm: str) -> tuple[str, dict]:
    """timm model name and kwargs for a ResNet ``name`` with normalisation ``norm``."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {NORMS}")
    if norm != "group" or name.endswith("_gn"):
        return name, {}
    if f"{name}_gn" in timm.list_models(f"{name}_gn"):
        return f"{name}_gn", {}  # e.g. resnet50_gn, which has ImageNet weights on the hub
    return name, {"norm_layer": GroupNorm32}


def _set_stride_one(stage: nn.Module) -> None:
    """Turn the stride-2 convs (and avg-pool shortcut) of a stage's first block into stride 1."""
    first = stage[0]
    for name, module in list(first.named_modules()):
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)
        elif isinstance(module, nn.AvgPool2d) and module.stride in (2, (2, 2)):
            parent = first.get_submodule(name.rsplit(".", 1)[0]) if "." in name else first
            setattr(parent, name.rsplit(".", 1)[-1], nn.Identity())


class ResNetBackbone(nn.Module):
    """A timm ResNet trunk returning C2-C5, with the last stage at stride 1.

    Args:
        name: timm ResNet name, e.g. ``resnet50``.
        norm: ``group`` (timm's ``*_gn`` architecture where one exists), ``batch`` or
            ``frozen_batch``.
        pretrained: ``None``, a local ``.safetensors``/``.pth`` file (loaded strictly,
            classifier keys dropped), or a timm hub tag such as ``resnet50_gn.a1h_in1k``.
    """

    def __init__(self, name: str = "resnet50", norm: str = "group", pretrained: str | None = None):
        super().__init__()
        arch, kwargs = timm_arch(name, norm)
        net = _create(arch, kwargs, pretrained)
        if norm == "frozen_batch":
            net = freeze_batch_norm_2d(net)
        _set_stride_one(net.layer4)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4,
        )
        info = {d["module"]: d for d in net.feature_info}
        self.channels: list[int] = [info[f"layer{i}"]["num_chs"] for i in range(1, 5)]
        strides = [info[f"layer{i}"]["reduction"] for i in range(1, 4)]
        self.strides: list[int] = strides + [strides[-1]]  # last stage at stride 1
        self.arch = arch

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """C2, C3, C4: the part shared by every branch."""
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        return [c2, c3, self.layer3(c3)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.forward_stages(x)
        return feats + [self.layer4(feats[-1])]


def _create(arch: str, kwargs: dict, pretrained: str | None) -> nn.Module:
    if pretrained is None:
        return timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
    if pretrained.endswith(_WEIGHT_SUFFIXES) or Path(pretrained).exists():
        net = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
        classifier = net.pretrained_cfg.get("classifier", "fc")
        state = load_state_dict_file(pretrained)
        load_strict(net, state, drop_prefixes=(f"{classifier}.",), source=pretrained)
        return net
    tag_arch = pretrained.split(".", 1)[0]
    if tag_arch != arch:
        raise ValueError(
            f"pretrained tag {pretrained!r} is for architecture {tag_arch!r}, "
            f"but the backbone is {arch!r}"
        )
    return timm.create_model(pretrained, pretrained=True, num_classes=0, **kwargs)  # hub download
