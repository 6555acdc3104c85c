"""``train.eval_every``: evaluation during training logs metrics and keeps best/last weights."""

from __future__ import annotations

import json

import pytest
from engine_utils import read_log

from personkit.config import config_from_dict
from personkit.engine.build import build_trainer, validate_training
from personkit.engine.periodic_eval import flatten_scores
from personkit.models.loading import load_model_and_config


def _cfg(world, **train):
    market = {"name": "market", "type": "market1501", "root": "Market-1501-v15.09.15",
              "input_size": [64, 32]}
    return config_from_dict({
        "model": {"backbone": {"name": "resnet10t", "norm": "group"},
                  "heads": ["reid", "id", "attributes"], "num_ids": 120, "input_size": [64, 32]},
        "data": {"root": str(world), "num_workers": 0,
                 "train": [{**market, "tasks": ["reid", "id", "attributes"], "sampler": "pk",
                            "pk_p": 4, "pk_k": 2, "augment": False}],
                 "eval": [{**market, "tasks": ["reid", "attributes"]}]},
        "train": {"iterations": 4, "lr": 1e-3, "device": "cpu", "checkpoint_every": 0,
                  "schedule": {"type": "constant"}, **train},
    })


def test_eval_every_logs_metrics_and_keeps_best_and_last(tiny_world_dir, tmp_path):
    cfg = _cfg(tiny_world_dir, eval_every=2, best_metric="market.reid.mAP")
    build_trainer(cfg, tmp_path, progress=False).train()
    evals = [r for r in read_log(tmp_path) if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(0 <= r["eval/market.reid.mAP"] <= 1 and "eval/market.attributes.mean" in r
               for r in evals)
    best = json.loads((tmp_path / "best.json").read_text())
    values = [r["eval/market.reid.mAP"] for r in evals]
    assert best["value"] == max(values) and best["step"] == evals[values.index(max(values))]["step"]
    assert best["scores"]["market.reid.mAP"] == best["value"]
    for name in ("model_best.safetensors", "model_last.safetensors", "model.safetensors"):
        model, _ = load_model_and_config(tmp_path / name)
        assert model.enabled == ("reid", "id", "attributes")
    assert list((tmp_path / "tb").iterdir())


def test_eval_off_writes_nothing_extra(tiny_world_dir, tmp_path):
    cfg = _cfg(tiny_world_dir, iterations=2)
    trainer = build_trainer(cfg, tmp_path, progress=False)
    assert trainer.hooks == ()
    trainer.train()
    assert not any(r.get("event") == "eval" for r in read_log(tmp_path))
    assert not (tmp_path / "model_best.safetensors").exists()
    assert not (tmp_path / "model_last.safetensors").exists()


@pytest.mark.parametrize(("metric", "message"), [
    ("lip.parts.mIoU", "market.attributes"),
    ("market.pose.Mean", "market.reid"),
    ("mAP", "<dataset>.<protocol>.<score>"),
])
def test_best_metric_is_checked_before_training(tiny_world_dir, metric, message):
    with pytest.raises(ValueError, match="train.best_metric") as err:
        validate_training(_cfg(tiny_world_dir, eval_every=2, best_metric=metric))
    assert message in str(err.value)


def test_unknown_score_name_fails_at_the_first_evaluation(tiny_world_dir, tmp_path):
    cfg = _cfg(tiny_world_dir, eval_every=1, iterations=1, best_metric="market.reid.mAPP")
    with pytest.raises(ValueError, match=r"'market.reid.mAPP'.*market.reid.mAP"):
        build_trainer(cfg, tmp_path, progress=False).train()


def test_flatten_scores_keeps_scalars_only():
    flat = flatten_scores({"m": {"reid": {"mAP": 0.5, "cmc": [1, 2], "n": 3, "ok": True}}})
    assert flat == {"m.reid.mAP": 0.5, "m.reid.n": 3.0}
