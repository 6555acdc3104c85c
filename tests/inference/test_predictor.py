"""Predictor: output shapes and types, keypoint mapping, flip TTA, heads, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from personkit.data.constants import MERGED5_CLASSES
from personkit.inference import AttributePrediction, PersonResult, Predictor
from personkit.inference.predictor import keypoints_to_image
from personkit.inference.preprocess import crop_box, crop_matrix
from personkit.models import ModelMeta, PersonOutputs
from personkit.models.numerics import fp32_tolerance, relative_difference

BOXES = [[10, 5, 50, 85], [60.5, 20.2, 100.7, 110.9], [120, 0, 160, 120]]


def test_predict_shapes_and_types(tiny_model, scene):
    results = Predictor(tiny_model).predict(scene, BOXES)
    assert len(results) == 3 and all(isinstance(r, PersonResult) for r in results)
    meta = tiny_model.meta
    for r, box in zip(results, BOXES, strict=True):
        assert r.box == pytest.approx(box)
        assert r.embedding.dtype == np.float32 and r.embedding.shape == (meta.embedding_dim,)
        assert set(r.attributes) == {"gender", "backpack", "upcolor"}
        for name, a in r.attributes.items():
            assert isinstance(a, AttributePrediction) and a.label in meta.attributes[name]
            assert 0 < a.probability <= 1
        assert r.keypoints.shape == (16, 3) and r.keypoints.dtype == np.float32
        assert ((r.keypoints[:, 2] >= 0) & (r.keypoints[:, 2] <= 1)).all()
        x1, y1, x2, y2 = r.parts_box
        assert r.parts.dtype == np.uint8 and r.parts.shape == (y2 - y1, x2 - x1)
        assert r.parts.max() < 20 and len(r.part_classes) == 20
    assert results[0].parts.shape == (80, 40)  # integer box: exactly the box size
    assert results[1].parts_box == (60, 20, 101, 111)  # rounded float box


def test_predict_crops_uses_crop_coordinates(tiny_model, scene):
    crops = [scene[:64, :32], scene[:100, :50]]
    results = Predictor(tiny_model, batch_size=1).predict_crops(crops)
    assert [r.box for r in results] == [(0, 0, 32, 64), (0, 0, 50, 100)]
    assert results[1].parts.shape == (100, 50)
    kp = results[1].keypoints
    assert (kp[:, 0] >= -0.5).all() and (kp[:, 0] <= 49.5).all() and (kp[:, 1] <= 99.5).all()


def test_batching_does_not_change_results(tiny_model, scene):
    # Batches of 1 and 8 may run other kernels (the batch shape picks them): outputs agree
    # within the model's float32 rounding bound; keypoints relative to their crop's size.
    tol = fp32_tolerance(tiny_model)
    a = Predictor(tiny_model, batch_size=1).predict(scene, BOXES)
    b = Predictor(tiny_model, batch_size=8).predict(scene, BOXES)
    for ra, rb in zip(a, b, strict=True):
        assert relative_difference(ra.embedding, rb.embedding) <= tol
        size = max(ra.box[2] - ra.box[0], ra.box[3] - ra.box[1])
        np.testing.assert_allclose(ra.keypoints[:, :2], rb.keypoints[:, :2], rtol=0,
                                   atol=tol * size)
        np.testing.assert_allclose(ra.keypoints[:, 2], rb.keypoints[:, 2], rtol=0, atol=tol)


def test_from_checkpoint_matches_the_model(tiny_model, tiny_checkpoint, scene):
    # Exact: the loaded weights are the model's bits, run by the same kernels on one thread.
    loaded = Predictor.from_checkpoint(tiny_checkpoint).predict(scene, BOXES[:1])[0]
    direct = Predictor(tiny_model).predict(scene, BOXES[:1])[0]
    np.testing.assert_array_equal(loaded.embedding, direct.embedding)
    assert loaded.attributes == direct.attributes


# ----------------------------------------------------------------------------- heads


class Spy(nn.Module):
    """Records the heads every forward call asked for."""

    def __init__(self, model):
        super().__init__()
        self.model, self.meta, self.calls = model, model.meta, []

    def forward(self, images, heads=None):
        self.calls.append(tuple(heads))
        return self.model(images, heads=heads)


def test_heads_that_are_off_are_not_computed(tiny_model, scene):
    spy = Spy(tiny_model)
    r = Predictor(spy, heads=["pose"]).predict(scene, BOXES[:2])[0]
    assert spy.calls == [("pose",)]
    assert r.keypoints is not None
    assert r.embedding is None and r.attributes is None and r.parts is None


def test_missing_head_is_absent_or_an_error(tiny, scene):
    make_model, _ = tiny
    model = make_model(heads=("reid", "pose"))
    r = Predictor(model).predict(scene, BOXES[:1])[0]
    assert r.embedding is not None and r.keypoints is not None
    assert r.attributes is None and r.parts is None
    with pytest.raises(ValueError, match="segmentation"):
        Predictor(model, heads=["segmentation"])


def test_merge_parts_gives_five_classes(tiny_model, scene):
    r = Predictor(tiny_model, merge_parts=True).predict(scene, BOXES[:1])[0]
    assert r.part_classes == MERGED5_CLASSES and r.parts.max() < 5


# ----------------------------------------------------------------------------- flip TTA


def test_flip_tta_averages_the_mirror(tiny_model, scene):
    crop = scene[:64, :32]  # at the input size: resizing is the identity
    plain = Predictor(tiny_model, flip_tta=False)
    e = plain.predict_crops([crop])[0].embedding
    e_flip = plain.predict_crops([crop[:, ::-1]])[0].embedding
    tta = Predictor(tiny_model, flip_tta=True).predict_crops([crop])[0]
    # the TTA pass runs image and mirror as one batch of two: another kernel shape
    assert relative_difference((e + e_flip) / 2, tta.embedding) <= fp32_tolerance(tiny_model)
    assert not np.allclose(tta.embedding, e, atol=1e-4)


# ----------------------------------------------------------------------------- keypoints


class ArgmaxModel(nn.Module):
    """Every joint sits at the brightest pixel of the crop (half-cell convention)."""

    def __init__(self, input_size=(64, 32)):
        super().__init__()
        self.meta = ModelMeta(input_size=input_size, mean=(0.0,) * 3, std=(1.0,) * 3,
                              heads=("pose",))

    def forward(self, images, heads=None):
        b, _, h, w = images.shape
        flat = images[:, 0].reshape(b, -1).argmax(dim=1)
        u = ((flat % w).float() + 0.5) / w
        v = ((flat // w).float() + 0.5) / h
        kp = torch.stack([u, v], dim=-1)[:, None].repeat(1, 16, 1)
        return PersonOutputs(keypoints=kp, keypoint_scores=torch.ones(b, 16))


@pytest.mark.parametrize("scale", [1, 2])
def test_keypoints_map_back_to_image_pixels(scale):
    image = np.zeros((200, 150, 3), np.uint8)
    x1, y1 = 17, 31
    cx, cy = 9, 40  # crop pixel of the bright spot
    ix, iy = x1 + scale * cx, y1 + scale * cy  # its top-left image pixel
    image[iy:iy + scale, ix:ix + scale] = 255
    box = [x1, y1, x1 + 32 * scale, y1 + 64 * scale]
    kp = Predictor(ArgmaxModel()).predict(image, [box])[0].keypoints
    expected = (ix + (scale - 1) / 2, iy + (scale - 1) / 2)  # centre of the bright block
    np.testing.assert_allclose(kp[:, :2], np.tile(expected, (16, 1)), atol=1e-4)


def test_keypoint_formula_inverts_the_crop():
    box = (10.0, 20.0, 74.0, 148.0)
    assert keypoints_to_image(np.array([0.5, 0.5]), box).tolist() == [41.5, 83.5]
    pts = np.random.default_rng(0).uniform(0, 1, size=(50, 2))
    m = crop_matrix(box, (64, 32))
    img_pts = keypoints_to_image(pts, box).astype(np.float64)
    crop_pts = img_pts @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(crop_pts, pts * [32, 64] - 0.5, atol=1e-4)


def test_crop_of_exact_box_is_the_pixels():
    image = np.random.default_rng(0).integers(0, 256, (100, 80, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop_box(image, (5, 7, 37, 71), (64, 32)), image[7:71, 5:37])


# ----------------------------------------------------------------------------- bad inputs


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        Predictor.from_checkpoint(tmp_path / "nothing.safetensors")


def test_empty_box_list_gives_no_results(tiny_model, scene):
    p = Predictor(tiny_model)
    assert p.predict(scene, []) == [] and p.predict(scene, np.zeros((0, 4))) == []
    assert p.predict_crops([]) == []


def test_boxes_are_clipped_and_empty_ones_rejected(tiny_model, scene):
    p = Predictor(tiny_model)
    r = p.predict(scene, [[-10, -5, 40, 200]])[0]
    assert r.box == (0, 0, 40, 120) and r.parts.shape == (120, 40)
    with pytest.raises(ValueError, match="box 1 has no area"):
        p.predict(scene, [[0, 0, 10, 10], [170, 10, 200, 50]])
    with pytest.raises(ValueError, match="N×4"):
        p.predict(scene, [[1, 2, 3]])


def test_grayscale_and_float_images(tiny_model, scene):
    p = Predictor(tiny_model)
    gray = scene[:, :, 1]
    ref = p.predict(np.repeat(gray[:, :, None], 3, axis=2), BOXES[:1])[0].embedding
    # the float image differs from the uint8 one by the rounding of x/255 (relative 2^-24),
    # far below the network's own float32 rounding bound
    for image in (gray, gray[:, :, None], gray.astype(np.float32) / 255):
        got = p.predict(image, BOXES[:1])[0].embedding
        assert relative_difference(ref, got) <= fp32_tolerance(tiny_model)
    with pytest.raises(ValueError, match="shape"):
        p.predict(np.zeros((10, 10, 2), np.uint8), BOXES[:1])
    with pytest.raises(ValueError, match="dtype"):
        p.predict(np.zeros((10, 10, 3), np.int32), BOXES[:1])


def test_bf16_on_the_cpu_stays_within_bf16_rounding(tiny_model, scene):
    """torch bf16 autocast on the CPU (issue #27): every output within the bound derived from
    bf16's 8-bit significand (personkit.models.numerics.bf16_tolerance)."""
    from personkit.models.numerics import bf16_tolerance

    tol = bf16_tolerance(tiny_model)
    ref = Predictor(tiny_model, device="cpu").predict(scene, BOXES)
    got = Predictor(tiny_model, device="cpu", precision="bf16").predict(scene, BOXES)
    for a, b in zip(ref, got, strict=True):
        assert relative_difference(a.embedding, b.embedding) <= tol
        for name, pred in a.attributes.items():
            assert abs(pred.probability - b.attributes[name].probability) <= tol or \
                pred.label != b.attributes[name].label
        size = max(a.box[2] - a.box[0], a.box[3] - a.box[1])
        assert np.abs(a.keypoints[:, :2] - b.keypoints[:, :2]).max() <= tol * size + 1.0


def test_bad_options(tiny_model):
    with pytest.raises(ValueError, match="precision"):
        Predictor(tiny_model, precision="fp16")  # fp16 autocast is CUDA only
    with pytest.raises(ValueError, match="batch_size"):
        Predictor(tiny_model, batch_size=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Predictor(tiny_model, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_autocast_channels_last(tiny, scene, precision):
    make_model, _ = tiny
    model = make_model()
    ref = Predictor(model).predict(scene, BOXES)
    got = Predictor(model, device="cuda", precision=precision, channels_last=True).predict(
        scene, BOXES)
    # A smoke check of the half-precision path: bf16 keeps 8 bits (u = 2^-8), so across ~40
    # layers outputs move by whole percents; joints stay within 2 px of a ~100 px crop.
    for a, b in zip(ref, got, strict=True):
        assert a.embedding.shape == b.embedding.shape
        np.testing.assert_allclose(a.keypoints[:, :2], b.keypoints[:, :2], atol=2.0)


def test_a_bounded_part_map_samples_the_box_and_draws_the_same(tiny_model):
    """``max_part_pixels`` (what the service sets, issue #32) keeps a huge box's part map
    small: the labels are the full map's, sampled every ``s`` pixels, their class fractions
    agree with the full map's, and the drawing enlarges them back onto the box."""
    from personkit.inference.visualize import draw_results

    rng = np.random.default_rng(1)
    image = cv2_resize(rng.integers(0, 256, (12, 9, 3), dtype=np.uint8), (900, 1200))
    boxes = [[0, 0, 900, 1200], [100.4, 50.6, 700.2, 1190.3]]
    full = Predictor(tiny_model, flip_tta=False).predict(image, boxes)
    small = Predictor(tiny_model, flip_tta=False, max_part_pixels=5000).predict(image, boxes)
    for f, s in zip(full, small, strict=True):
        assert s.parts_box == f.parts_box and s.parts.size <= 5000
        step = -(-f.parts.shape[0] // s.parts.shape[0])
        assert s.parts.shape == (-(-f.parts.shape[0] // step), -(-f.parts.shape[1] // step))
        fa, fb = (np.bincount(m.ravel(), minlength=20) / m.size for m in (f.parts, s.parts))
        assert np.abs(fa - fb).max() < 0.05  # the same classes in the same shares
        np.testing.assert_array_equal(s.embedding, f.embedding)
    a, b = draw_results(image, full), draw_results(image, small)
    assert a.shape == b.shape and np.mean(a != b) < 0.1  # block edges differ, nothing else


def cv2_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def test_binary_decisions_follow_the_calibrated_threshold(tiny_model, scene):
    """Issue #34: a binary attribute's decision is class 1 when its probability reaches the
    threshold ``personkit eval`` calibrated (``attribute_thresholds`` in calibration.json);
    every prediction carries all class probabilities and, for yes/no attributes, the
    probability of class 1 (``positive``)."""
    plain = Predictor(tiny_model, flip_tta=False)
    base = plain.predict(scene, BOXES)
    assert plain.attribute_thresholds == {}
    for r in base:
        for a in r.attributes.values():
            assert a.probability == max(a.probabilities)  # the arg-max without thresholds
            assert (a.positive is None) == (len(a.probabilities) != 2)
        assert r.to_dict()["attributes"]["backpack"]["positive"] == pytest.approx(
            r.attributes["backpack"].probabilities[1], abs=1e-4)
        assert "positive" not in r.to_dict()["attributes"]["upcolor"]
    record = {"threshold": 0.01, "weights": plain.engine.weights_hash,
              "attribute_thresholds": {"backpack": 0.0, "gender": 1.01}}
    tuned = Predictor(tiny_model, flip_tta=False, calibrations={plain.model_id: record})
    assert tuned.attribute_thresholds == {"backpack": 0.0, "gender": 1.01}
    for r, b in zip(tuned.predict(scene, BOXES), base, strict=True):
        assert r.attributes["backpack"].label == "yes"  # every probability reaches 0
        assert r.attributes["gender"].label == "male"  # none reaches 1.01
        assert r.attributes["backpack"].probability == r.attributes["backpack"].positive
        assert r.attributes["upcolor"] == b.attributes["upcolor"]  # multi-class: arg-max
    flipped = Predictor(tiny_model, flip_tta=True, calibrations={plain.model_id: record})
    assert flipped.attribute_thresholds == record["attribute_thresholds"]  # same weights


def test_thresholds_of_another_model_are_not_used_and_said(tiny_model, scene):
    record = {"threshold": 0.01, "weights": "f" * 64,
              "attribute_thresholds": {"backpack": 0.0}}
    p = Predictor(tiny_model, flip_tta=False, calibrations={"0123456789abcdef": record})
    with pytest.warns(UserWarning, match="thresholds of model\\(s\\) 0123456789abcdef, not of "
                                         "this model"):
        assert p.attribute_thresholds == {}
