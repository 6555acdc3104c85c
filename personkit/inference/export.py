"""Exports of the multi-task model: ONNX (:func:`export_onnx`) and OpenVINO IR
(:func:`export_openvino`, converted from the ONNX graph), and :func:`engine_from_model`, the
in-memory export a :class:`~personkit.inference.Predictor` runs on ONNX Runtime or OpenVINO.
``personkit export`` (the files checked against PyTorch, int8 copies) is
:mod:`personkit.deploy.export`.

The graph's inputs, outputs and metadata follow :mod:`personkit.inference.contract`; outputs
of heads that are off (or absent from the checkpoint) are not in the graph.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from personkit.checkpoint import content_hash
from personkit.extras import require
from personkit.inference.backends import (
    OnnxRuntimeEngine,
    OpenVINOEngine,
    open_export,
    save_openvino,
)
from personkit.inference.contract import ExportWrapper, export_metadata, output_names, select_heads

DEFAULT_OPSET = 17


def export_onnx(model: nn.Module, path: str | Path, heads: Collection[str] | None = None,
                opset: int = DEFAULT_OPSET, config: dict[str, Any] | None = None,
                input_size: tuple[int, int] | None = None,
                calibrations: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write ``model`` as one ONNX graph with named outputs and a dynamic batch axis.

    The model's metadata (and ``config`` if given, and the ``calibrations`` of its weights:
    :func:`~personkit.inference.contract.export_metadata`) is stored in the ONNX
    ``metadata_props``.
    ``input_size`` (H, W) exports the fully convolutional model for another input size than
    its own (e.g. an evaluation set's); the metadata then carries that size.
    """
    onnx = require("onnx")
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    heads = select_heads(heads, model.meta.heads, "this model (to export)")
    wrapper = ExportWrapper(model, heads).eval()
    names = output_names(model.meta, heads)
    meta = model.meta if input_size is None else replace(model.meta,
                                                         input_size=tuple(input_size))
    h, w = meta.input_size
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
    props = export_metadata(meta, heads, content_hash(model.state_dict()), calibrations)
    if config is not None:
        props["personkit_config"] = json.dumps(config)
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = "personkit multi-task person model; input 'images' is normalised RGB"
    onnx.save(proto, str(path))
    return path


def export_openvino(model: nn.Module, out_dir: str | Path, heads: Collection[str] | None = None,
                    onnx_path: str | Path | None = None, opset: int = DEFAULT_OPSET,
                    input_size: tuple[int, int] | None = None,
                    calibrations: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write an OpenVINO IR (``out_dir/model.xml`` + ``model.bin``, fp32 weights) converted
    from the ONNX export (``onnx_path`` if already written, else a temporary one).

    The personkit metadata (as :func:`export_onnx`'s) is stored in the IR's ``rt_info`` under
    ``personkit``.
    ``input_size`` as in :func:`export_onnx` (it must match ``onnx_path``'s).
    """
    ov = require("openvino")
    heads = select_heads(heads, model.meta.heads, "this model (to export)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if onnx_path is None:
            onnx_path = export_onnx(model, Path(tmp) / "model.onnx", heads, opset,
                                    input_size=input_size)
        ov_model = ov.convert_model(str(onnx_path))
        meta = model.meta if input_size is None else replace(model.meta,
                                                             input_size=tuple(input_size))
        return save_openvino(ov_model, out_dir, export_metadata(
            meta, heads, content_hash(model.state_dict()), calibrations))


def engine_from_model(model: nn.Module, engine: str, heads: Collection[str] | None = None,
                      device: str = "cpu", threads: int | None = None, precision: str = "fp32"
                      ) -> OnnxRuntimeEngine | OpenVINOEngine:
    """An ONNX Runtime or OpenVINO engine for an in-memory model, through a temporary ONNX
    export that both engines read fully into memory."""
    require("onnxruntime" if engine == "onnxruntime" else "openvino")
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", heads)
        return open_export(path, engine, device, threads, precision)
