"""ONNX "detectors" with fixed outputs, for tests of the detector layouts and of `track` and
`predict --detector`: torch modules that emit a layout with known boxes, exported to ONNX."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


class Constant(torch.nn.Module):
    """Outputs fixed tensors; they depend on the input only through a zero, so that the
    exporter keeps the input."""

    def __init__(self, *outputs: torch.Tensor):
        super().__init__()
        self.outputs = outputs

    def forward(self, images: torch.Tensor):
        zero = images.mean() * 0
        return tuple(o + zero.to(o.dtype) for o in self.outputs)


class Probe(torch.nn.Module):
    """Outputs ``base`` plus, at chosen places, ``scale`` × the mean of a region of its input
    image: a fake whose scores show how the detector prepared the input (channel order,
    scale, where the letterbox put the frame and its padding).

    ``probes``: ``(output index, channel, (row0, row1), scale)``, the region being rows
    ``row0:row1`` of that input channel (every column).
    """

    def __init__(self, base: torch.Tensor, probes: list[tuple[tuple[int, ...], int,
                                                              tuple[int, int], float]]):
        super().__init__()
        self.base = base
        self.probes = []
        for index, channel, rows, scale in probes:
            mask = torch.zeros_like(base)
            mask[index] = scale
            self.probes.append((mask, channel, rows))

    def forward(self, images: torch.Tensor):
        out = self.base + images.mean() * 0
        for mask, channel, (r0, r1) in self.probes:
            out = out + images[:, channel, r0:r1, :].mean() * mask
        return out


def export(module: torch.nn.Module, path: Path, example: torch.Tensor,
           output_names: list[str] | None = None, dynamic: dict | None = None) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["images"], output_names=output_names,
                          dynamic_axes={"images": dynamic} if dynamic else None)
    return path


def torchvision_layout(path: Path, boxes: list[list[float]], scores: list[float],
                       labels: list[int] | None = None) -> Path:
    """A torchvision-export layout (one ``[3, H, W]`` image in; ``boxes``, ``labels``,
    ``scores`` out) that finds ``boxes`` (persons unless ``labels`` says otherwise) in every
    frame of any size."""
    labels = labels or [1] * len(boxes)
    return export(Constant(torch.tensor(boxes, dtype=torch.float32), torch.tensor(labels),
                           torch.tensor(scores, dtype=torch.float32)),
                  path, torch.zeros(3, 32, 32), ["boxes", "labels", "scores"],
                  {1: "height", 2: "width"})
