"""Config loading: strict keys and types, overrides, round trip."""

from pathlib import Path

import pytest

from personkit.config import (
    ConfigError,
    config_from_dict,
    load_config,
    load_detector_config,
    save_config,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted([*(ROOT / "configs").glob("*.yaml"),
                  *(ROOT / "personkit" / "configs").glob("*.yaml")])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_round_trip(path, tmp_path):
    load = load_detector_config if path.name.startswith("detector") else load_config
    cfg = load(path)  # train-detector's configs are named detector*.yaml
    save_config(cfg, tmp_path / "c.yaml")
    assert load(tmp_path / "c.yaml") == cfg


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  backbone: {name: resnet18, nrom: group}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown key 'model\.backbone\.nrom'"):
        load_config(path)


def test_wrong_type_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  iterations: many\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'train\.iterations'.*'many'"):
        load_config(path)


def test_literal_choices_are_checked():
    with pytest.raises(ConfigError, match="'model.sharing'.*'shared'"):
        config_from_dict({"model": {"sharing": "shared"}})


def test_overrides_set_nested_and_list_items(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train:\n    - {name: a, type: fake, batch_size: 4}\n")
    cfg = load_config(path, ["train.lr=1e-3", "data.train.0.batch_size=16",
                             "model.backbone.name=resnet34"])
    assert cfg.train.lr == 1e-3 and cfg.data.train[0].batch_size == 16
    assert cfg.model.backbone.name == "resnet34"
    assert cfg.data.train[0].input_size == (256, 128)  # lists become typed tuples
    with pytest.raises(ConfigError, match="unknown key 'train.lrr'"):
        load_config(path, ["train.lrr=1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(path, ["train.lr"])


def test_config_is_frozen():
    cfg = config_from_dict({})
    with pytest.raises(AttributeError):
        cfg.train.lr = 1.0  # type: ignore[misc]


def test_dataset_task_without_head_is_rejected():
    raw = {"model": {"heads": ["reid"]},
           "data": {"train": [{"name": "m", "type": "fake", "tasks": ["pose"]}]}}
    with pytest.raises(ConfigError, match="asks for \\['pose'\\]"):
        config_from_dict(raw)


def test_fpn_pose_features_need_single_sharing():
    """A model constraint is a config error at load time, not a crash when the run starts
    (the study runner validates every row by loading its config)."""
    assert config_from_dict({"model": {"pose_features": "fpn", "sharing": "single"}})
    for sharing in ("split", "multi"):
        with pytest.raises(ConfigError, match="'model.pose_features' fpn needs 'model.sharing' "
                                              f"single, got '{sharing}'"):
            config_from_dict({"model": {"pose_features": "fpn", "sharing": sharing}})
