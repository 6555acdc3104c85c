"""Evaluation under DDP: every rank scores its shard, the results are gathered before scoring."""

import json
import subprocess
import sys

from personkit.engine.evaluate import evaluate_reid_attributes

_SETUP = r"""
import torch
from pathlib import Path
from personkit.data.fake import FakePersonDataset
from personkit.data.records import PersonRecord
from personkit.models import ModelMeta, MultiTaskModel, ResNetBackbone

def setup():
    torch.manual_seed(0)
    model = MultiTaskModel(ResNetBackbone("resnet10t", "group"), ["reid"],
                           meta=ModelMeta((64, 32), (0.5,) * 3, (0.25,) * 3, ("reid",))).eval()
    query, gallery = (FakePersonDataset(6, n, (64, 32), seed=s) for n, s in ((1, 1), (5, 2)))
    records = [[PersonRecord(Path(f"{i}.jpg"), pid=d.pids[i] + 1, camid=int(d[i]["camid"]) + s)
                for i in range(len(d))] for d, s in ((query, 0), (gallery, 1))]
    return model, query, gallery, *records
"""

_WORKER = _SETUP + r"""
import json, sys
import torch.distributed as dist
from personkit.engine.evaluate import evaluate_reid_attributes
rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
torch.set_num_threads(1)
model, query, gallery, q_rec, g_rec = setup()
res = evaluate_reid_attributes(model, query, gallery, q_rec, g_rec, batch_size=1,
                               progress=False)["reid"]
json.dump({k: res[k] for k in ("mAP", "rank1", "num_valid_queries")}, open(out, "w"))
dist.destroy_process_group()
"""


def test_two_rank_evaluation_equals_one_process(tmp_path):
    namespace: dict = {}
    exec(_SETUP, namespace)  # noqa: S102 - the same setup code as the workers
    model, query, gallery, q_rec, g_rec = namespace["setup"]()
    # Batches of one image and one thread everywhere: each embedding comes from the same
    # kernels on the same input in both set-ups (batch shapes pick kernels), and the gathered
    # shards are put back in record order, so the scores must be equal, not merely close.
    single = evaluate_reid_attributes(model, query, gallery, q_rec, g_rec, batch_size=1,
                                      progress=False)["reid"]
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path / "store"),
                               str(tmp_path / f"rank{r}.json")], stderr=subprocess.PIPE,
                              text=True) for r in (0, 1)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
    for r in (0, 1):
        res = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert res["num_valid_queries"] == single["num_valid_queries"] == 6
        assert (res["mAP"], res["rank1"]) == (single["mAP"], single["rank1"])
