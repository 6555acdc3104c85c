"""The machine's own limit for ``personkit bench``: the fp32 GEMM ceiling (and the int8 one
where the CPU has VNNI/AMX) from a large matrix product, and the model's counted FLOPs per crop
per part (:class:`torch.utils.flop_counter.FlopCounterMode`, 2 FLOPs per multiply-add)."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import torch

from personkit.models import TASKS, MultiTaskModel
from personkit.runtime import cpu_flags, has_isa


def has_bf16() -> bool:
    """Whether the CPU has bf16 instructions (AVX512-BF16 or AMX-BF16)."""
    return has_isa("bf16")


def _fastest(fn: Any, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn``, after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def gemm_ceiling(n: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """Best-of-``repeats`` throughput of an ``n×n×n`` product: fp32 ``torch.mm`` in GFLOP/s,
    bf16 ``torch.mm`` (oneDNN) in GFLOP/s where the CPU has bf16 instructions and, where it
    has VNNI or AMX, int8 in GOP/s: ``int8_gops`` is the fastest of ``torch._int_mm``
    (oneDNN) and OpenVINO's int8 matrix product and convolution
    (:func:`openvino_int8_gops`), named by ``int8_source``."""
    def best(fn: Any) -> float:
        return 2 * n ** 3 / _fastest(fn, repeats) / 1e9

    a, b = torch.randn(n, n), torch.randn(n, n)
    out: dict[str, Any] = {"n": n, "threads": torch.get_num_threads(),
                           "fp32_gflops": best(lambda: torch.mm(a, b))}
    flags = cpu_flags()
    if has_bf16():
        ab, bb = a.bfloat16(), b.bfloat16()
        out["bf16_gflops"] = best(lambda: torch.mm(ab, bb))
    vnni = sorted(f for f in flags if "vnni" in f or f.startswith("amx"))
    out["int8_features"] = vnni
    if vnni:
        ai = torch.randint(-128, 127, (n, n), dtype=torch.int8)
        bi = torch.randint(-128, 127, (n, n), dtype=torch.int8)
        try:
            out["int8_torch_gops"] = best(lambda: torch._int_mm(ai, bi))
        except RuntimeError as e:  # a torch build without CPU int8 GEMM
            out["int8_torch_gops"], out["int8_error"] = None, str(e)[:200]
        out["int8_openvino"] = openvino_int8_gops(n, repeats)
        # the yardstick: the fastest int8 kernel measured (OpenVINO's are the engine's own)
        rates = {f"openvino {k}": v["gops"] for k, v in out["int8_openvino"].items()
                 if v["precision"] in ("u8", "i8")}
        if out["int8_torch_gops"]:
            rates["torch._int_mm"] = out["int8_torch_gops"]
        out["int8_source"] = max(rates, key=rates.get) if rates else None
        out["int8_gops"] = rates[out["int8_source"]] if rates else None
    return out


def openvino_int8_gops(n: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """The int8 ceiling with the kernels personkit's int8 engine runs (issue 38, item 4:
    ``torch._int_mm`` understates it; a folded-BN int8 trunk ran at 124 % of it): best-of-
    ``repeats`` GOP/s of OpenVINO's CPU plugin (oneDNN: AMX or VNNI) on an ``n×n×n`` matrix
    product and on chains of four 3×3 convolutions (256 channels at 32×32 and 512 at 16×16,
    batch ``n / 256``) whose activations stay int8 between layers, as in a quantised
    network; each quantised as OpenVINO runs an int8 export (u8 activations behind a
    FakeQuantize, i8 weights with a per-channel scale), with the precision OpenVINO ran it
    at (``u8``/``i8``: int8 kernels). A single convolution measures its f32 input and output
    more than its kernel (1.8 against 3.9 TOP/s chained, Sapphire Rapids). Empty where
    OpenVINO is not installed."""
    try:
        import numpy as np
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        return {}

    rng = np.random.default_rng(0)

    def dequantised(shape: tuple[int, ...]) -> Any:
        w = ops.constant(rng.integers(-127, 128, shape, dtype=np.int8))
        scale = np.full((shape[0],) + (1,) * (len(shape) - 1), 0.002, np.float32)
        return ops.multiply(ops.convert(w, ov.Type.f32), ops.constant(scale))

    def quantised(x: Any) -> Any:
        lo, hi = ops.constant(np.float32(0.0)), ops.constant(np.float32(2.55))
        return ops.fake_quantize(x, lo, hi, lo, hi, 256)

    def chain(c: int, hw: int, b: int, depth: int = 4) -> tuple[Any, int]:
        x = y = ops.parameter([b, c, hw, hw], ov.Type.f32, name="x")
        for _ in range(depth):
            y = ops.relu(ops.convolution(quantised(y), dequantised((c, c, 3, 3)), [1, 1],
                                         [1, 1], [1, 1], [1, 1]))
        return ov.Model([y], [x], f"conv{c}"), 2 * b * hw * hw * c * c * 9 * depth

    x = ops.parameter([n, n], ov.Type.f32, name="x")
    models = {"matmul": (ov.Model([ops.matmul(quantised(x), dequantised((n, n)), False, True)],
                                  [x], "gemm"), 2 * n ** 3),
              "conv3x3 256ch": chain(256, 32, max(1, n // 256)),
              "conv3x3 512ch": chain(512, 16, max(1, n // 256))}
    core, out = ov.Core(), {}
    for name, (model, ops_count) in models.items():
        compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        data = (rng.random(tuple(model.inputs[0].shape)) * 2.5).astype(np.float32)
        seconds = _fastest(functools.partial(request.infer, {0: data}), repeats)
        kinds = {str(op.get_rt_info()["layerType"].astype(str)):
                 str(op.get_rt_info()["runtimePrecision"].astype(str))
                 for op in compiled.get_runtime_model().get_ops()}
        out[name] = {"gops": ops_count / seconds / 1e9,
                     "precision": kinds.get("FullyConnected", kinds.get("Convolution"))}
    return out


def count_flops(model: MultiTaskModel, heads: Sequence[str] | None = None) -> dict[str, float]:
    """GFLOP per crop of the trunk and of each head alone on cached trunk features."""
    from torch.utils.flop_counter import FlopCounterMode

    heads = [h for h in TASKS if h in model.enabled and (heads is None or h in heads)]
    h, w = model.meta.input_size
    x = torch.randn(1, 3, h, w, device=next(model.parameters()).device)
    out = {}
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            trunk = model.trunk(x, heads)
        out["trunk"] = counter.get_total_flops() / 1e9
        for head in heads:
            with FlopCounterMode(display=False) as counter:
                model.run_heads(trunk, [head])
            out[f"head:{head}"] = counter.get_total_flops() / 1e9
    return out
