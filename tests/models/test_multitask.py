"""The composed model: shapes for every head × sharing × norm, gradients, split-pose."""

import pytest
import torch

from personkit.models import HEADS, ModelMeta, MultiTaskModel, ResNetBackbone, flip_tta_embedding

ATTRS = {"gender": 2, "age": 4, "upcolor": 8}
META = ModelMeta(input_size=(128, 64), mean=(0.5,) * 3, std=(0.25,) * 3, heads=HEADS)


def make_model(sharing="single", norm="group", heads=HEADS, seg_classes=5):
    torch.manual_seed(0)
    backbone = ResNetBackbone("resnet18", norm)
    return MultiTaskModel(backbone, heads, sharing=sharing, num_ids=7, attributes=ATTRS,
                          seg_classes=seg_classes, fpn_channels=32, seg_channels=16, meta=META)


@pytest.mark.parametrize("norm", ["group", "batch", "frozen_batch"])
@pytest.mark.parametrize("sharing", ["single", "multi", "split"])
def test_output_shapes_and_dtypes(sharing, norm):
    model = make_model(sharing, norm).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 128, 64))
    width = 512 - 16 if sharing == "split" else 512
    assert model.meta.embedding_dim == width
    assert out.embedding.shape == (2, width) and out.embedding.dtype == torch.float32
    assert out.id_logits.shape == (2, 7)
    assert {k: tuple(v.shape) for k, v in out.attributes.items()} == {
        "gender": (2, 2), "age": (2, 4), "upcolor": (2, 8)}
    assert out.heatmaps.shape == (2, 16, 8, 4)  # output stride 16
    assert out.keypoints.shape == (2, 16, 2)
    assert ((out.keypoints >= 0) & (out.keypoints <= 1)).all()
    assert out.keypoint_scores.shape == (2, 16)
    assert out.parts.shape == (2, 5, 128, 64)


def test_backbone_strides_match_features():
    backbone = ResNetBackbone("resnet18", "group")
    feats = backbone(torch.randn(1, 3, 128, 64))
    assert backbone.strides == [4, 8, 16, 16]
    for f, c, s in zip(feats, backbone.channels, backbone.strides, strict=True):
        assert f.shape[1:] == (c, 128 // s, 64 // s)


def test_requested_heads_only_and_same_outputs_in_train_and_eval():
    model = make_model()
    model.train()
    out = model(torch.randn(2, 3, 64, 32), heads=["pose"])
    assert out.keypoints is not None
    assert out.embedding is None and out.parts is None and out.attributes is None
    model.eval()
    out_eval = model(torch.randn(2, 3, 64, 32), heads=["pose"])
    assert type(out_eval) is type(out) and out_eval.embedding is None


def test_heads_switched_off_at_build_time():
    model = make_model(heads=("reid", "pose"))
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert "fpn" not in names
    assert set(model.heads) == {"reid", "pose"}
    out = model(torch.randn(2, 3, 64, 32))
    assert out.parts is None and out.id_logits is None and out.embedding is not None
    with pytest.raises(ValueError, match="segmentation"):
        model(torch.randn(2, 3, 64, 32), heads=["segmentation"])


def _head_loss(out, head):
    value = {"reid": out.embedding, "id": out.id_logits, "pose": out.keypoints,
             "segmentation": out.parts}.get(head)
    if head == "attributes":
        return sum(v.sum() for v in out.attributes.values())
    return value.float().pow(2).mean()


@pytest.mark.parametrize("sharing", ["single", "multi", "split"])
def test_gradients_reach_backbone_from_each_head(sharing):
    model = make_model(sharing)
    x = torch.randn(2, 3, 64, 32)
    for head in HEADS:
        model.zero_grad(set_to_none=True)
        _head_loss(model(x, heads=[head]), head).backward()
        grad = model.backbone.stem[0].weight.grad
        assert grad is not None and grad.abs().sum() > 0, head


def test_multi_branch_copies_start_equal_and_are_independent():
    model = make_model("multi")
    assert set(model.branches) == {"attributes", "pose", "segmentation"}  # reid uses layer4
    for branch in model.branches.values():
        for a, b in zip(branch.parameters(), model.backbone.layer4.parameters(), strict=True):
            assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


def test_split_heatmaps_are_last_backbone_channels():
    model = make_model("split").eval()
    captured = {}
    model.backbone.layer4.register_forward_hook(lambda m, i, o: captured.setdefault("c5", o))
    with torch.no_grad():
        out = model(torch.randn(2, 3, 128, 64))
    c5 = captured["c5"]
    assert torch.equal(out.heatmaps, c5[:, -16:])
    assert torch.equal(out.embedding, c5[:, :-16].amax(dim=(2, 3)))
    assert "pose" in model.heads and not any(True for _ in model.heads["pose"].parameters())


@pytest.mark.parametrize("name", ["resnet10t", "resnet26d"])
def test_other_resnet_families_keep_output_stride_16(name):
    """Deep-stem and avg-pool-shortcut variants; GroupNorm adapts its groups to 24 channels."""
    backbone = ResNetBackbone(name, "group")
    feats = backbone(torch.randn(1, 3, 64, 32))
    assert [f.shape[-2:] for f in feats] == [(16, 8), (8, 4), (4, 2), (4, 2)]
    assert backbone.strides == [4, 8, 16, 16] and feats[-1].shape[1] == backbone.channels[-1]


@pytest.mark.parametrize("heads", [HEADS, ("pose",)])
def test_pose_on_fpn_gives_stride_4_heatmaps(heads):
    torch.manual_seed(0)
    model = MultiTaskModel(ResNetBackbone("resnet18", "group"), heads, num_ids=7,
                           attributes=ATTRS, fpn_channels=32, seg_channels=16,
                           pose_features="fpn", meta=META)
    images = torch.randn(2, 3, 128, 64)
    out = model(images, heads=["pose"])
    assert out.heatmaps.shape == (2, 16, 32, 16) and out.parts is None
    out.keypoints.sum().backward()
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0
    assert model.fpn.lateral[0].weight.grad.abs().sum() > 0
    if "segmentation" in heads:  # both heads share one pyramid
        full = model.eval()(images)
        assert full.parts.shape == (2, 20, 128, 64)
        torch.testing.assert_close(full.keypoints, model(images, heads=["pose"]).keypoints)


@pytest.mark.parametrize("sharing", ["multi", "split"])
def test_pose_on_fpn_needs_single_branch(sharing):
    with pytest.raises(ValueError, match="pose_features='fpn' needs sharing='single'"):
        MultiTaskModel(ResNetBackbone("resnet18", "group"), HEADS, sharing=sharing, num_ids=7,
                       attributes=ATTRS, pose_features="fpn", meta=META)


def _outputs_of(out, head):
    if head == "attributes":
        return out.attributes
    return {"reid": out.embedding, "id": out.id_logits, "pose": out.keypoints,
            "segmentation": out.parts}[head]


@pytest.mark.parametrize("sharing", ["single", "multi", "split"])
def test_one_head_alone_equals_that_head_among_all(sharing):
    """Asking for one head gives what the full forward gives for it (each global head pools
    its own branch; under ``multi`` the attributes must not read the ReID branch)."""
    model = make_model(sharing, norm="batch").eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        for p in model.branches.parameters():  # trained branches differ from each other
            p.add_(0.05 * torch.randn_like(p))
        full = model(x)
        for head in HEADS:
            torch.testing.assert_close(_outputs_of(model(x, heads=[head]), head),
                                       _outputs_of(full, head), rtol=0, atol=0, msg=head)


def test_each_branch_gets_gradients_from_its_own_tasks():
    """A Market-like batch (reid, id, attributes) trains the reid and attribute branches and
    leaves the pose and segmentation branches untouched."""
    model = make_model("multi")
    out = model(torch.randn(4, 3, 64, 32), heads=["reid", "id", "attributes"])
    loss = out.embedding.pow(2).mean() + out.id_logits.pow(2).mean()
    (loss + sum(v.pow(2).mean() for v in out.attributes.values())).backward()

    def has_grad(module):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        return all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0

    assert has_grad(model.backbone.layer4)  # the reid branch
    assert has_grad(model.branches["attributes"])
    assert all(p.grad is None for name in ("pose", "segmentation")
               for p in model.branches[name].parameters())
    model.zero_grad(set_to_none=True)
    sum(v.sum() for v in model(torch.randn(2, 3, 64, 32), heads=["attributes"]).attributes
        .values()).backward()
    assert has_grad(model.branches["attributes"])
    assert all(p.grad is None for p in model.backbone.layer4.parameters())


def test_forward_is_trunk_then_heads():
    model = make_model("multi").eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        trunk = model.trunk(x, heads=["attributes", "pose"])
        assert set(trunk.top) == {"attributes", "pose"}
        pieces = model.run_heads(trunk, heads=["attributes", "pose"])
        whole = model(x, heads=["attributes", "pose"])
    torch.testing.assert_close(pieces.keypoints, whole.keypoints, rtol=0, atol=0)
    torch.testing.assert_close(pieces.attributes, whole.attributes, rtol=0, atol=0)


def test_flip_tta_embedding_is_the_mean_with_the_mirror():
    model = make_model(heads=("reid",)).eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        plain = model(x).embedding
        mirrored = model(torch.flip(x, dims=[3])).embedding
        torch.testing.assert_close(flip_tta_embedding(model, x, plain), (plain + mirrored) / 2,
                                   rtol=0, atol=0)
