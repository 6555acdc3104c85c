"""ONNX export: named outputs, dynamic batch, metadata and parity with PyTorch."""

from __future__ import annotations

import json

import onnx
import pytest

from personkit.deploy.export import check_parity
from personkit.inference.contract import output_names
from personkit.inference.export import export_onnx
from personkit.models.numerics import fp32_tolerance

ALL_OUTPUTS = ["embedding", "attr_gender", "attr_backpack", "attr_upcolor", "keypoints",
               "keypoint_scores", "parts"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model):
    return export_onnx(tiny_model, tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_named_outputs_dynamic_batch_and_metadata(exported, tiny_model):
    proto = onnx.load(str(exported))
    assert [o.name for o in proto.graph.output] == ALL_OUTPUTS
    heads = ("reid", "attributes", "pose", "segmentation")
    assert output_names(tiny_model.meta, heads) == ALL_OUTPUTS
    batch_dims = [o.type.tensor_type.shape.dim[0].dim_param for o in proto.graph.output]
    assert batch_dims == ["batch"] * len(ALL_OUTPUTS)
    assert proto.opset_import[0].version >= 17
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["personkit_meta"])
    assert meta["input_size"] == [64, 32] and len(meta["part_classes"]) == 20


def test_parity_with_pytorch_at_two_batch_sizes(exported, tiny_model):
    # ONNX Runtime sums in another order than torch: the bound is the model's own float32
    # rounding bound (fp32_tolerance), the parity check's default
    report = check_parity(tiny_model, exported, batch_sizes=(2, 5))
    assert set(report.max_abs) == set(ALL_OUTPUTS)
    assert report.ok and report.tol == fp32_tolerance(tiny_model), report.summary()
    assert "PASS" in report.summary()


def test_export_a_subset_of_heads(tmp_path, tiny_model):
    path = export_onnx(tiny_model, tmp_path / "reid.onnx", heads=["reid"])
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["embedding"]
    assert check_parity(tiny_model, path, heads=["reid"], batch_sizes=(1,)).ok
    with pytest.raises(ValueError, match=r"heads \['id'\] are not available; this model \(to "):
        export_onnx(tiny_model, tmp_path / "x.onnx", heads=["id"])


def test_export_pose_on_fpn_with_windowed_decoding(tmp_path, tiny):
    make_model, _ = tiny
    model = make_model(pose_features="fpn", pose_window=1)
    path = export_onnx(model, tmp_path / "pose.onnx", heads=["pose"])
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["keypoints", "keypoint_scores"]
    report = check_parity(model, path, heads=["pose"], batch_sizes=(3,))
    assert report.ok and report.tol == fp32_tolerance(model), report.summary()
