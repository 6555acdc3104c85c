"""The machine's own limit for ``personkit bench``: the fp32 GEMM ceiling (and the int8 one
where the CPU has VNNI/AMX) from a large matrix product, and the model's counted FLOPs per crop
per part (:class:`torch.utils.flop_counter.FlopCounterMode`, 2 FLOPs per multiply-add)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from personkit.models import TASKS, MultiTaskModel
from personkit.runtime import cpu_flags, has_isa


def has_bf16() -> bool:
    """Whether the CPU has bf16 instructions (AVX512-BF16 or AMX-BF16)."""
    return has_isa("bf16")


def gemm_ceiling(n: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """Best-of-``repeats`` throughput of an ``n×n×n`` product: fp32 ``torch.mm`` in GFLOP/s,
    bf16 ``torch.mm`` (oneDNN) in GFLOP/s where the CPU has bf16 instructions and, where it
    has VNNI or AMX, int8 ``torch._int_mm`` (oneDNN) in GOP/s."""
    def best(fn: Any) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 2 * n ** 3 / min(times) / 1e9

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
            out["int8_gops"] = best(lambda: torch._int_mm(ai, bi))
        except RuntimeError as e:  # a torch build without CPU int8 GEMM
            out["int8_gops"], out["int8_error"] = None, str(e)[:200]
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
