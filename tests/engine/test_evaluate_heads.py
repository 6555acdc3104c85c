"""Evaluation of models with any subset of heads: each protocol runs only when its head exists
(the Table 2 attribute-only baseline has no ReID head)."""

from __future__ import annotations

import pytest

from personkit.config import config_from_dict, config_to_dict
from personkit.engine.evaluate import run_evaluation
from personkit.models.build import build_model


def _cfg(world, heads, eval_tasks):
    return config_from_dict({
        "model": {"backbone": {"name": "resnet18", "norm": "group"}, "heads": heads,
                  "num_ids": 4, "seg_classes": 20, "fpn_channels": 16, "seg_channels": 8,
                  "input_size": [64, 32]},
        "data": {"root": str(world), "num_workers": 0, "eval": [
            {"name": "market", "type": "market1501", "root": "Market-1501-v15.09.15",
             "tasks": eval_tasks, "input_size": [64, 32]}]},
    })


@pytest.mark.parametrize(("heads", "expected"), [
    (["attributes"], {"attributes"}),
    (["reid", "id"], {"reid", "match"}),  # match: the calibrated same-person threshold
])
def test_head_subsets_evaluate_only_their_protocols(tiny_world_dir, heads, expected):
    cfg = _cfg(tiny_world_dir, heads, ["reid", "attributes"])
    model = build_model(cfg.model).eval()
    results = run_evaluation(model, cfg, batch_size=64, progress=False)
    assert set(results["market"]) == expected
    if "attributes" in expected:
        scores = results["market"]["attributes"]
        assert 0.0 <= scores["mean"] <= 1.0 and "acc/gender" in scores
    if "reid" in expected:
        assert 0.0 <= results["market"]["reid"]["mAP"] <= 1.0


def test_a_set_the_model_cannot_run_is_an_error_when_named_and_left_out_otherwise(
        tiny_world_dir, capsys):
    """A ReID model and a pose set: no silent ``{"mpii": {}}`` (issue #22, item 9)."""
    cfg = _cfg(tiny_world_dir, ["reid", "id"], ["reid"])
    raw = config_to_dict(cfg)
    raw["data"]["eval"].append({"name": "mpii", "type": "mpii", "root": "mpii",
                                "split": "val", "tasks": ["pose"], "input_size": [48, 48]})
    cfg = config_from_dict(raw)
    model = build_model(cfg.model).eval()
    with pytest.raises(ValueError, match=r"dataset 'mpii' \(tasks \['pose'\]\) has no protocol"):
        run_evaluation(model, cfg, ["mpii"], progress=False)
    results = run_evaluation(model, cfg, progress=False)
    assert set(results) == {"market"}
    assert "mpii left out" in capsys.readouterr().err
    pose_only = build_model(_cfg(tiny_world_dir, ["pose"], ["reid", "attributes"]).model).eval()
    with pytest.raises(ValueError, match="its heads are"):
        run_evaluation(pose_only, _cfg(tiny_world_dir, ["pose"], ["reid", "attributes"]),
                       progress=False)
