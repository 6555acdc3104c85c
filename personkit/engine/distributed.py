"""Process-group helpers for data-parallel training and evaluation on PyTorch's own engine.

A run started by ``torchrun`` (or ``personkit train --nproc N``, which launches it) finds
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment; :func:`init_from_env` joins
the process group (NCCL on CUDA, gloo on CPU). Without a process group every helper here is a
no-op for a single process, so the same code runs with and without ``torchrun``.

Conventions (see ``docs/training.md``): batch sizes in the config are global; every rank runs
the same dataset at every step and takes its own shard of that dataset's batch; only rank 0
writes logs and checkpoints; logged losses are means over ranks.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (its rank variables are set)."""
    return all(v in os.environ for v in _TORCHRUN_VARS)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def get_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0)) if is_initialized() else 0


def is_main() -> bool:
    """True on rank 0 (and without a process group): the process that writes files."""
    return get_rank() == 0


def init_from_env(device: torch.device) -> torch.device:
    """Join the ``torchrun`` process group; returns this rank's device.

    The backend is NCCL for CUDA devices (each rank takes ``cuda:LOCAL_RANK``) and gloo
    otherwise. Without ``torchrun`` variables this does nothing and returns ``device``.
    """
    if not launched_by_torchrun() or is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def destroy() -> None:
    """Leave the process group (after a final barrier), if one was joined."""
    if is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def _device() -> torch.device:
    """Where collective tensors live: this rank's GPU for NCCL, else the CPU."""
    if is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (picklable objects)."""
    if get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_tensors(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated along dim 0 in rank order, on every rank.

    Ranks may hold different numbers of rows (the last evaluation shard is often shorter);
    the other dimensions and the dtype must agree.
    """
    world = get_world_size()
    if world == 1:
        return tensor
    dev = _device()
    local = tensor.detach().to(dev)
    sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], device=dev))
    counts = [int(n) for n in sizes]
    longest = max(counts)
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[:local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    rows = [p[:n] for p, n in zip(parts, counts, strict=True)]
    return torch.cat(rows).to(tensor.device)


def gather_arrays(array: np.ndarray) -> np.ndarray:
    """:func:`gather_tensors` for numpy arrays (evaluation features, labels, statistics).

    Numeric and bool arrays travel as tensors; other dtypes (strings, objects) are pickled.
    Without a process group the array is returned unchanged.
    """
    array = np.asarray(array)
    if get_world_size() == 1:
        return array
    if array.dtype.kind not in "biuf":
        return np.concatenate(all_gather_object(array))
    kind = np.uint8 if array.dtype == np.bool_ else array.dtype
    gathered = gather_tensors(torch.from_numpy(np.ascontiguousarray(array, dtype=kind)))
    return gathered.numpy().astype(array.dtype, copy=False)


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``values`` over ranks (a detached copy; NaN anywhere -> NaN)."""
    values = values.detach().clone()
    if get_world_size() > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= get_world_size()
    return values


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average ``.grad`` over ranks for parameters outside the DDP module (loss weights)."""
    if get_world_size() == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= get_world_size()


def convert_sync_bn(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Every BatchNorm layer -> :class:`torch.nn.SyncBatchNorm` when there is more than one
    rank (in place for submodules, like torch's converter); else ``model`` unchanged.

    SyncBatchNorm runs on GPUs only, and DDP refuses it on CPU modules.
    """
    if not enabled or get_world_size() == 1:
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` when there is more than one rank, else ``model``.

    ``find_unused_parameters=True`` because each step runs only the heads its dataset needs;
    all ranks use the same dataset per step, so the used set agrees across ranks.
    """
    if get_world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                               find_unused_parameters=True)


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m personkit <argv>`` in ``nproc`` processes on this machine via
    ``torch.distributed.run`` (the engine behind ``torchrun``); returns an exit code."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(
        ["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc), "--module",
         "personkit", *argv])
    try:
        run(args)
    except ChildFailedError as e:
        codes = [f.exitcode for f in e.failures.values()]
        print(f"personkit: {len(codes)} of {nproc} training processes failed "
              f"(exit codes {codes}); see their messages above", file=sys.stderr)
        return next((c for c in codes if c > 0), 1)
    return 0
