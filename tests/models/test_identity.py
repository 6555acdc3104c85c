"""Model identity and the calibration store (personkit/models/identity.py)."""

from __future__ import annotations

import json

import pytest

from personkit.models import ModelMeta
from personkit.models.identity import (
    calibration_file,
    model_identity,
    read_calibrations,
    write_calibration,
)

META = ModelMeta(input_size=(64, 32), mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2),
                 heads=("reid",))


def test_identity_binds_weights_meta_and_flip():
    ids = {model_identity(META, "w1", True), model_identity(META, "w2", True),
           model_identity(META, "w1", False),
           model_identity(ModelMeta((128, 64), META.mean, META.std, ("reid",)), "w1", True)}
    assert len(ids) == 4 and model_identity(META, "w1", True) == model_identity(META, "w1", True)
    assert model_identity(META, None, True) is None


def test_calibration_lives_in_the_run_directory(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert calibration_file(run) == run / "calibration.json"
    assert calibration_file(run / "model.safetensors") == run / "calibration.json"
    assert calibration_file(run / "checkpoints" / "step_00000010.pt") == run / "calibration.json"
    assert read_calibrations(run) == {}
    write_calibration(run / "checkpoints" / "step_00000010.pt", "a", {"threshold": 0.1})
    write_calibration(run, "b", {"threshold": 0.2})
    write_calibration(run, "a", {"threshold": 0.3})  # the same weights evaluated again: replaced
    assert read_calibrations(run / "model.safetensors") == {"a": {"threshold": 0.3},
                                                            "b": {"threshold": 0.2}}


@pytest.mark.parametrize("text", ["{", "[1, 2]", json.dumps({"a": {"precision": 1}})])
def test_a_damaged_calibration_file_is_named(tmp_path, text):
    (tmp_path / "calibration.json").write_text(text)
    with pytest.raises(ValueError, match="calibration.json: not a personkit calibration file"):
        read_calibrations(tmp_path)
