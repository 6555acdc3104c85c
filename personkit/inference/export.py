"""ONNX export of the multi-task model with a parity check against PyTorch (ONNX Runtime).

The graph takes ``images``, a normalised ``B×3×H×W`` float32 batch at the model's input size
(mean/std and the size are stored in the ONNX metadata, key ``personkit_meta``), and returns
named outputs, each with a dynamic batch axis:

* ``embedding``: ``B×D`` ReID embedding;
* ``attr_<name>``: ``B×C`` logits, one per attribute (e.g. ``attr_gender``);
* ``keypoints``: ``B×16×2`` normalised (x, y), ``u = (x + 0.5) / W`` in the crop;
* ``keypoint_scores``: ``B×16`` confidences;
* ``parts``: ``B×C×H×W`` part logits at the input size.

Outputs of heads that are off (or absent from the checkpoint) are not in the graph.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from personkit.inference.predictor import TASKS

DEFAULT_OPSET = 17


class ExportWrapper(nn.Module):
    """``forward(images)`` -> the tuple of outputs named by :func:`output_names`."""

    def __init__(self, model: nn.Module, heads: Sequence[str]):
        super().__init__()
        self.model = model
        self.heads = tuple(heads)
        self.attribute_names = tuple(model.meta.attributes) if "attributes" in heads else ()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(images, heads=self.heads)
        result: list[torch.Tensor] = []
        if "reid" in self.heads:
            result.append(out.embedding)
        result += [out.attributes[name] for name in self.attribute_names]
        if "pose" in self.heads:
            result += [out.keypoints, out.keypoint_scores]
        if "segmentation" in self.heads:
            result.append(out.parts)
        return tuple(result)


def resolve_heads(model: nn.Module, heads: Collection[str] | None) -> tuple[str, ...]:
    """The exported tasks: ``heads`` (checked) or every task the model has."""
    available = tuple(t for t in TASKS if t in model.meta.heads)
    if heads is None:
        return available
    missing = [h for h in heads if h not in available]
    if missing or not heads:
        raise ValueError(f"cannot export heads {sorted(heads)}; this model has {available}")
    return tuple(t for t in TASKS if t in heads)


def output_names(model: nn.Module, heads: Sequence[str]) -> list[str]:
    """ONNX output names for ``heads``, in graph order."""
    names = ["embedding"] if "reid" in heads else []
    if "attributes" in heads:
        names += [f"attr_{name}" for name in model.meta.attributes]
    if "pose" in heads:
        names += ["keypoints", "keypoint_scores"]
    if "segmentation" in heads:
        names.append("parts")
    return names


@dataclass
class ParityReport:
    """Max |ONNX - PyTorch| per output over the checked batch sizes, and the same relative
    to the output's largest magnitude; ``ok`` when every relative difference is ``<= tol``."""

    max_abs: dict[str, float] = field(default_factory=dict)
    max_rel: dict[str, float] = field(default_factory=dict)
    batch_sizes: tuple[int, ...] = ()
    tol: float = 1e-4

    @property
    def ok(self) -> bool:
        return all(v <= self.tol for v in self.max_rel.values())

    @property
    def worst_rel(self) -> float:
        return max(self.max_rel.values(), default=0.0)

    def summary(self) -> str:
        lines = [f"{'output':<24}{'max abs diff':>14}{'relative':>12}"]
        lines += [f"{n:<24}{self.max_abs[n]:>14.3e}{self.max_rel[n]:>12.3e}"
                  for n in self.max_abs]
        verdict = "PASS" if self.ok else "FAIL"
        lines.append(f"parity {verdict}: worst relative difference {self.worst_rel:.3e} "
                     f"(tolerance {self.tol:.0e}), batch sizes {list(self.batch_sizes)}")
        return "\n".join(lines)


def export_onnx(model: nn.Module, path: str | Path, heads: Collection[str] | None = None,
                opset: int = DEFAULT_OPSET, config: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as one ONNX graph with named outputs and a dynamic batch axis.

    The model's metadata (and ``config`` if given) is stored in the ONNX ``metadata_props``.
    """
    import onnx

    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    heads = resolve_heads(model, heads)
    wrapper = ExportWrapper(model, heads).eval()
    names = output_names(model, heads)
    h, w = model.meta.input_size
    dummy = torch.zeros(2, 3, h, w, device=next(model.parameters()).device)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on shape arithmetic; batch stays dynamic
        torch.onnx.export(
            wrapper, (dummy,), str(path), dynamo=False, opset_version=opset,
            input_names=["images"], output_names=names,
            dynamic_axes={n: {0: "batch"} for n in ["images", *names]},
        )
    proto = onnx.load(str(path))
    props = {"personkit_meta": json.dumps(model.meta.to_dict()),
             "personkit_heads": json.dumps(list(heads))}
    if config is not None:
        props["personkit_config"] = json.dumps(config)
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = "personkit multi-task person model; input 'images' is normalised RGB"
    onnx.save(proto, str(path))
    return path


def onnx_session(path: str | Path, device: str = "cpu", threads: int | None = None,
                 spin: bool = True) -> Any:
    """An ONNX Runtime session (CUDA provider first when ``device`` is ``cuda``).

    ``spin=False`` stops idle worker threads from busy-waiting, which would otherwise steal
    CPU time from whatever runs next (used by the benchmark).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), options, providers=providers)


def check_parity(model: nn.Module, onnx_path: str | Path, heads: Collection[str] | None = None,
                 batch_sizes: Sequence[int] = (2, 3), tol: float = 1e-4,
                 seed: int = 0) -> ParityReport:
    """Run PyTorch and ONNX Runtime on the same random normalised batches and compare.

    A batch size other than the export's (2) checks the dynamic axis. The model is moved to
    the CPU.
    """
    heads = resolve_heads(model, heads)
    wrapper = ExportWrapper(model, heads).eval().cpu()
    names = output_names(model, heads)
    session = onnx_session(onnx_path)
    got_names = [o.name for o in session.get_outputs()]
    if got_names != names:
        raise ValueError(f"{onnx_path} has outputs {got_names}, expected {names}")
    meta = model.meta
    h, w = meta.input_size
    gen = torch.Generator().manual_seed(seed)
    mean = torch.tensor(meta.mean).view(1, 3, 1, 1)
    std = torch.tensor(meta.std).view(1, 3, 1, 1)
    report = ParityReport(batch_sizes=tuple(batch_sizes), tol=tol)
    for b in batch_sizes:
        x = (torch.rand(b, 3, h, w, generator=gen) - mean) / std
        with torch.inference_mode():
            ref = [t.float().numpy() for t in wrapper(x)]
        got = session.run(names, {"images": x.numpy()})
        for name, r, o in zip(names, ref, got, strict=True):
            if r.shape != o.shape:
                raise ValueError(f"output {name}: ONNX shape {o.shape} != PyTorch {r.shape}")
            diff = float(np.abs(r - o).max()) if r.size else 0.0
            rel = diff / max(float(np.abs(r).max()) if r.size else 0.0, 1e-12)
            report.max_abs[name] = max(report.max_abs.get(name, 0.0), diff)
            report.max_rel[name] = max(report.max_rel.get(name, 0.0), rel)
    return report
