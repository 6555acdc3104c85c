"""Data-parallel training on gloo with two CPU processes, and the process-group helpers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from engine_utils import SUBPROCESS_ENV, read_log, run_personkit, tiny_config, write_config
from torch import nn

from personkit.checkpoint import read_weights
from personkit.cli import main as cli_main
from personkit.config import config_from_dict
from personkit.engine import distributed
from personkit.engine.build import build_trainer


def _segmentation_config() -> dict:
    seg = {"tasks": ["segmentation"], "type": "fake", "input_size": [64, 32]}
    return tiny_config(
        {"iterations": 4, "checkpoint_every": 2},
        [{"name": "pk", "sampler": "pk", "pk_p": 4, "pk_k": 2,
          "options": {"num_ids": 8, "images_per_id": 2}, **seg},
         {"name": "random", "batch_size": 8, "options": {"num_ids": 6, "images_per_id": 4},
          **seg}],
        heads=["segmentation"])


@pytest.mark.slow  # 15 s quiet; make test keeps the gloo helpers and two-rank evaluation
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    """``personkit train --nproc 2`` (torchrun, gloo) logs the same losses as one process.

    The config's batch sizes are global: each rank takes half of every batch (two of the
    four identities of a PK batch, with all their images). DDP averages the ranks' gradients,
    which equals the one-process gradient only if every loss is a mean over equally weighted
    samples and nothing couples the samples of a batch. So this run uses a GroupNorm backbone
    and segmentation alone with ``seg_top_k=1`` (plain mean cross-entropy over equally sized,
    fully labelled masks). Left out on purpose: the ID and attribute heads (BatchNorm1d uses
    batch statistics), the triplet loss (mines within the batch) and pose (a mean over a
    varying number of valid joints). The two datasets check that every rank follows the same
    interleaving draw; logged losses are means over ranks, written by rank 0 alone.
    """
    cfg = _segmentation_config()
    cfg["train"]["optimizer"] = "sgd"  # an update linear in the gradient: see below
    path = write_config(tmp_path / "ddp.yaml", cfg)
    run_personkit("train", str(path), "--out", "two", "--nproc", "2", "--no-progress",
                  cwd=tmp_path)
    trainer = build_trainer(config_from_dict(cfg), tmp_path / "one", progress=False)
    w0 = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    one = trainer.train()
    two = read_log(tmp_path / "two")

    assert [r["step"] for r in two] == [1, 2, 3, 4]  # one writer: every step once
    assert [r["dataset"] for r in two] == [r["dataset"] for r in one]
    assert {r["dataset"] for r in two} == {"pk", "random"}
    # Losses: at step 1 the weights are equal, so the two logged means differ only by the
    # order of the float32 sums over the batch's pixels (8 images x 64x32 terms): at most
    # n * eps/2 relative. Later steps add the weights' gap, bounded below by 1e-3 of their
    # displacement; to first order it moves a loss by at most 1e-3 of the loss itself.
    rel = 8 * 64 * 32 * float(torch.finfo(torch.float32).eps) / 2 + 1e-3
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=rel), (a, b)
    w1, _ = read_weights(tmp_path / "one" / "model.safetensors")
    w2, _ = read_weights(tmp_path / "two" / "model.safetensors")
    assert w1.keys() == w2.keys() == w0.keys()
    # The two runs' gradients differ only by float rounding (the order of the sums differs
    # between one process and an all-reduce over two). With SGD a weight moves by lr times
    # its (momentum-averaged) gradients, so the runs' weights differ by the same relative
    # rounding of each weight's own displacement. Adam would not do: it moves every weight by
    # about lr per step whatever the gradient's size, so rounding on a near-zero gradient
    # becomes an lr-sized step whose sign depends on the CPU's kernels. A wrong shard or a
    # missing all-reduce moves weights by O(1) of their displacement.
    # Bound: a conv weight's gradient sums over the batch's pixels (8 images x 64x32 = 16k
    # terms, whose summation order differs), worst-case relative rounding ~ n * eps/2 ~ 1e-3;
    # plus each run rounding the stored weight to float32 once per step (2 runs x 4 steps).
    eps = float(torch.finfo(torch.float32).eps)
    for k in w1:
        moved = float((w1[k] - w0[k]).abs().max())
        gap = float((w1[k] - w2[k]).abs().max())
        storage = 2 * 4 * eps * float(w1[k].abs().max())
        assert gap <= 1e-3 * moved + storage, (k, gap, moved)
    names = sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir())
    assert names == ["step_00000002.pt", "step_00000004.pt"]
    assert len(list((tmp_path / "two" / "tb").iterdir())) == 1  # rank 1 wrote no events


_WORKER = r"""
import json, sys
import numpy as np, torch, torch.distributed as dist
from torch import nn
from personkit.engine import distributed as D

rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
bn = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Flatten(1), nn.BatchNorm1d(4))
norms = lambda m: sorted({type(x).__name__ for x in m.modules() if "Norm" in type(x).__name__})
before = norms(bn)
synced = D.convert_sync_bn(bn)
ddp = D.wrap_model(nn.Linear(2, 2), torch.device("cpu"))
p = nn.Parameter(torch.zeros(1))
p.grad = torch.tensor([rank + 1.0])
D.average_gradients([p])
result = {
    "rank": D.get_rank(), "world": D.get_world_size(), "main": D.is_main(),
    "features": D.gather_arrays(np.full((3 - 2 * rank, 2), rank, np.float32)).tolist(),
    "flags": D.gather_arrays(np.array([rank == 0] * (rank + 1))).tolist(),
    "names": D.gather_arrays(np.array([f"r{rank}"])).tolist(),
    "objects": D.all_gather_object({"rank": rank}),
    "broadcast": D.broadcast_object(f"from rank {rank}"),
    "mean": D.mean_over_ranks(torch.tensor([rank, 2.0 * rank])).tolist(),
    "grad": p.grad.tolist(),
    "ddp": type(ddp).__name__, "norms": before, "synced": norms(synced),
}
D.barrier()
json.dump(result, open(out, "w"))
dist.destroy_process_group()
"""


def test_helpers_in_two_gloo_processes(tmp_path):
    """Gathers of unequal shards in rank order, broadcasts, means, gradient averaging, the DDP
    wrapper and the SyncBatchNorm conversion (module types only: SyncBatchNorm needs GPUs)."""
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path / "store"),
                               str(tmp_path / f"rank{r}.json")], env=SUBPROCESS_ENV,
                              stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, res in enumerate(results):
        assert (res["rank"], res["world"], res["main"]) == (rank, 2, rank == 0)
        assert res["features"] == [[0.0, 0.0]] * 3 + [[1.0, 1.0]]
        assert res["flags"] == [True, False, False]
        assert res["names"] == ["r0", "r1"]
        assert res["objects"] == [{"rank": 0}, {"rank": 1}]
        assert res["broadcast"] == "from rank 0"
        assert res["mean"] == [0.5, 1.0]
        assert res["grad"] == [1.5]
        assert res["ddp"] == "DistributedDataParallel"
        assert res["norms"] == ["BatchNorm1d", "BatchNorm2d"]
        assert res["synced"] == ["SyncBatchNorm"]


def test_helpers_without_a_process_group_are_identities():
    x = np.arange(6).reshape(3, 2)
    model = nn.BatchNorm1d(2)
    assert distributed.gather_arrays(x) is x
    assert distributed.all_gather_object(3) == [3]
    assert distributed.broadcast_object("a") == "a"
    assert torch.equal(distributed.mean_over_ranks(torch.ones(2)), torch.ones(2))
    assert distributed.convert_sync_bn(model) is model
    assert distributed.wrap_model(model, torch.device("cpu")) is model
    assert (distributed.get_rank(), distributed.get_world_size(), distributed.is_main()) == (
        0, 1, True)


@pytest.mark.parametrize(("change", "message"), [
    ({"train": {"sync_bn": True}}, "train.sync_bn needs GPUs"),
    ({"pk_p": 3}, "dataset 'pk': PK sampler: P=3 is not divisible by world_size=2"),
])
def test_nproc_rejects_configs_before_launching(tmp_path, capsys, change, message):
    cfg = _segmentation_config()
    cfg["train"].update(change.get("train", {}))
    if "pk_p" in change:
        cfg["data"]["train"][0]["pk_p"] = change["pk_p"]
    path = write_config(tmp_path / "bad.yaml", cfg)
    code = cli_main(["train", str(path), "--out", str(tmp_path / "run"), "--nproc", "2"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
