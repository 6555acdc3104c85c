"""Every setting is validated before work starts (issue 14, item 7): a table of bad settings,
each with the error type and the key (and allowed range) its message must name.

Rows are generated from the ranges declared on the config dataclasses
(:func:`personkit.config.num`), so a newly added numeric field is covered automatically; a
test also fails for a numeric field declared without a range.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import pytest
import torch
import yaml

from personkit.cli import main as cli_main
from personkit.config import (
    Config,
    ConfigError,
    Range,
    apply_overrides,
    config_from_dict,
    detector_config_from_dict,
    read_raw_config,
)

#: Where each config dataclass sits in the base config below (lists by their first item).
_BASE = {
    "model": {"num_ids": 8},
    "data": {"train": [{"name": "a", "type": "fake", "tasks": ["reid"]}],
             "eval": [{"name": "b", "type": "fake"}]},
    "train": {"iterations": 2},
}


def _dataclass_paths(cls: type = Config, prefix: str = "") -> list[tuple[str, type]]:
    """(key prefix, dataclass) for every config dataclass reachable from ``cls``."""
    found = [(prefix, cls)]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(tp):
            found += _dataclass_paths(tp, key)
        elif typing.get_origin(tp) is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            found += _dataclass_paths(typing.get_args(tp)[0], f"{key}.0")
    return found


def _numeric(tp: typing.Any) -> type | None:
    """int or float if the type hint ``tp`` holds numbers (alone, optional, in a tuple/dict)."""
    if tp in (int, float):
        return tp
    for arg in typing.get_args(tp):
        if arg is not Ellipsis and (found := _numeric(arg)) is not None:
            return found
    return None


def _ranged_fields() -> list[tuple[str, str, type, Range, typing.Any]]:
    """(key, field name, number type, range, type hint) of every numeric config field."""
    rows = []
    for prefix, cls in _dataclass_paths():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = _numeric(hints[f.name])
            if kind is not None:
                key = f"{prefix}.{f.name}" if prefix else f.name
                rows.append((key, f.name, kind, f.metadata.get("range"), hints[f.name]))
    return rows


def _bad_values(kind: type, rng: Range) -> list[float]:
    """Values just outside each bound, and NaN / infinities for floats."""
    step = 1 if kind is int else 0.5
    bad = []
    if rng.ge is not None:
        bad.append(kind(rng.ge - step))
    if rng.gt is not None:
        bad.append(kind(rng.gt) if kind is float else int(rng.gt))
    if rng.le is not None:
        bad.append(kind(rng.le + step))
    if rng.lt is not None:
        bad.append(kind(rng.lt))
    if kind is float:
        bad += [math.nan, math.inf, -math.inf]
    return bad


def _shape(tp: typing.Any, value: float, name: str) -> tuple[typing.Any, str]:
    """The override value placing ``value`` in a field of type ``tp`` and the item's key
    suffix the error must name (a tuple's item 0, a dict's first key)."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        n = 1 if args[-1] is Ellipsis else len(args)
        return [value] * n, ".0"
    if origin is dict:
        key = "reid" if name == "weights" else "gender"
        return {key: value}, f".{key}"
    return value, ""


def _generated_rows() -> list:
    rows = []
    for key, name, kind, rng, tp in _ranged_fields():
        assert rng is not None, f"{key} has no declared range"
        for value in _bad_values(kind, rng):
            shaped, suffix = _shape(tp, value, name)
            rows.append(pytest.param(key, shaped, key + suffix, str(rng),
                                     id=f"{key}={value}"))
    return rows


def test_every_numeric_field_declares_a_range():
    """A new numeric setting must say what it allows (num(..., ge=...) in config.py)."""
    missing = [key for key, _, _, rng, _ in _ranged_fields() if rng is None]
    assert not missing, f"numeric config fields without a range: {missing}"
    assert len(_ranged_fields()) >= 40  # model, datasets, data, loss, train, schedule


def test_defaults_and_shipped_configs_pass_their_ranges():
    config_from_dict(_BASE)
    for path in Path(__file__).parents[1].joinpath("configs").glob("*.yaml"):
        load = detector_config_from_dict if path.name.startswith("detector") else (
            config_from_dict)  # train-detector's configs are named detector*.yaml
        load(read_raw_config(path), str(path))  # with its `base:` files merged


@pytest.mark.parametrize(("key", "value", "named", "allowed"), _generated_rows())
def test_out_of_range_setting_names_its_key_and_range(key, value, named, allowed):
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")
    raw = apply_overrides(_BASE, [f"{key}={text}"], "bad.yaml")
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw, "bad.yaml")
    message = str(e.value)
    assert f"'{named}'" in message and "bad.yaml" in message
    assert allowed in message or "expected" in message  # a range, or the type for ints


# The issue's examples, as a user types them (override text, key named, text in the message).
ISSUE_ROWS = [
    ("train.grad_clip=-1", "train.grad_clip", "> 0"),
    ("train.lr=.inf", "train.lr", "> 0, got inf"),
    ("train.lr=.nan", "train.lr", "got nan"),
    ("train.lr=0", "train.lr", "> 0"),
    ("train.iterations=0", "train.iterations", ">= 1"),
    ("train.iterations=-3", "train.iterations", ">= 1"),
    ("train.epochs=-1", "train.epochs", "> 0"),
    ("train.checkpoint_every=-1", "train.checkpoint_every", ">= 0"),
    ("train.log_every=0", "train.log_every", ">= 1"),
    ("train.keep_checkpoints=-1", "train.keep_checkpoints", ">= 0"),
    ("train.schedule.final_factor=-0.5", "train.schedule.final_factor", "> 0 and <= 1"),
    ("train.schedule.final_factor=2", "train.schedule.final_factor", "<= 1"),
    ("train.schedule.decay_end=0.2", "train.schedule.decay_end", "train.schedule.decay_start"),
    ("train.schedule.milestones=[0.8,0.2]", "train.schedule.milestones", "increasing"),
    ("model.input_size=[0,0]", "model.input_size.0", ">= 1"),
    ("data.train.0.input_size=[64,-1]", "data.train.0.input_size.1", ">= 1"),
    ("data.train.0.batch_size=-4", "data.train.0.batch_size", ">= 1"),
    ("data.train.0.pk_p=0", "data.train.0.pk_p", ">= 1"),
    ("data.num_workers=-1", "data.num_workers", ">= 0"),
    ("model.std=[0.2,0,0.2]", "model.std.1", "> 0"),
    ("loss.weights={pose: .nan}", "loss.weights.pose", "got nan"),
    ("train.momentum=1", "train.momentum", "< 1"),
    ("train.max_nonfinite_steps=0", "train.max_nonfinite_steps", ">= 1"),
]


@pytest.mark.parametrize(("override", "key", "text"), ISSUE_ROWS,
                         ids=[r[0] for r in ISSUE_ROWS])
def test_issue_examples_are_rejected_by_the_cli_with_one_line(tmp_path, capsys, override, key,
                                                               text):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_BASE), encoding="utf-8")
    code = cli_main(["train", str(config), override, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"'{key}'" in err and text in err, err
    assert not (tmp_path / "run").exists()  # nothing written before the check


def _fake_config(tmp_path: Path, **model) -> Path:
    cfg = {"model": {"backbone": {"name": "resnet18"}, "num_ids": 8, "seg_classes": 5,
                     "fpn_channels": 8, "seg_channels": 8, "input_size": [64, 32],
                     "heads": ["reid", "id"], **model},
           "data": {"num_workers": 0, "train": [
               {"name": "ids", "type": "fake", "tasks": ["reid", "id"], "sampler": "pk",
                "pk_p": 2, "pk_k": 2, "input_size": [64, 32],
                "options": {"num_ids": 8, "images_per_id": 2}}]},
           "train": {"iterations": 1, "device": "cpu", "checkpoint_every": 0}}
    path = tmp_path / "fake.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_num_ids_smaller_than_the_identities_in_the_data(tmp_path, capsys):
    code = cli_main(["train", str(_fake_config(tmp_path, num_ids=5)),
                     "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "dataset 'ids' has 8 identities" in err and "model.num_ids=5" in err
    assert "at least 8" in err and not (tmp_path / "run" / "log.jsonl").exists()


@pytest.mark.parametrize("nproc", ["0", "-2", "two"])
def test_nproc_below_one_is_an_argument_error(tmp_path, capsys, nproc):
    with pytest.raises(SystemExit) as e:
        cli_main(["train", str(_fake_config(tmp_path)), "--out", str(tmp_path / "run"),
                  "--nproc", nproc])
    assert e.value.code == 2
    assert "--nproc" in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_device_without_cuda_is_a_clear_error(tmp_path, capsys, device):
    code = cli_main(["train", str(_fake_config(tmp_path)), f"train.device={device}",
                     "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"train.device={device!r} but CUDA is not available" in err
    assert not (tmp_path / "run").exists()


def test_unknown_device_name_is_a_clear_error(tmp_path, capsys):
    code = cli_main(["train", str(_fake_config(tmp_path)), "train.device=gpu0",
                     "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "train.device='gpu0'" in err
