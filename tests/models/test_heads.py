"""Head building blocks: soft-argmax half-cell convention, segmentation head structure."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from personkit.models.heads import PoseHead, SemanticFPNHead, soft_argmax_2d


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), data=st.data())
def test_soft_argmax_recovers_one_hot_cell(h, w, data):
    i = data.draw(st.integers(0, h - 1))
    j = data.draw(st.integers(0, w - 1))
    heatmaps = torch.full((1, 1, h, w), -1e4)
    heatmaps[0, 0, i, j] = 1e4
    coords, probs = soft_argmax_2d(heatmaps)
    assert torch.allclose(coords[0, 0], torch.tensor([(j + 0.5) / w, (i + 0.5) / h]), atol=1e-6)
    assert torch.allclose(probs.sum(), torch.tensor(1.0))


def test_soft_argmax_uniform_map_is_centre():
    coords, _ = soft_argmax_2d(torch.zeros(2, 3, 16, 8))
    assert torch.allclose(coords, torch.full((2, 3, 2), 0.5), atol=1e-6)


def two_peaks(weaker: float = 0.0) -> torch.Tensor:
    """One 12×12 map with equal (or, by ``weaker``, unequal) peaks at cells (2, 2) and (2, 9)."""
    heatmaps = torch.zeros(1, 1, 12, 12)
    heatmaps[0, 0, 2, 2] = 8.0
    heatmaps[0, 0, 2, 9] = 8.0 - weaker
    return heatmaps


def test_global_soft_argmax_puts_two_peaks_in_between():
    coords, _ = soft_argmax_2d(two_peaks())
    assert 0.35 < coords[0, 0, 0] < 0.65  # on neither peak (x = 2.5/12 or 9.5/12)


def test_windowed_soft_argmax_stays_on_the_stronger_peak():
    heatmaps = two_peaks(weaker=0.5).requires_grad_()
    coords, probs = soft_argmax_2d(heatmaps, window=1)
    assert abs(coords[0, 0, 0].item() - 2.5 / 12) < 0.01
    assert abs(coords[0, 0, 1].item() - 2.5 / 12) < 0.01
    assert probs[0, 0, :, 5:].sum() == 0  # nothing outside the window
    coords.sum().backward()
    assert heatmaps.grad[0, 0, 1:4, 1:4].abs().sum() > 0  # differentiable inside it
    window0, _ = soft_argmax_2d(two_peaks(weaker=0.5), window=0)
    torch.testing.assert_close(window0[0, 0], torch.tensor([2.5 / 12, 2.5 / 12]))


def test_pose_head_window_keeps_confidence_of_the_whole_map():
    head = PoseHead(1, num_joints=1, window=1)
    head.conv.weight.data.fill_(1.0)
    head.conv.bias.data.zero_()  # heatmap = input: logit 2 at cell (4, 4), 0 elsewhere
    features = torch.zeros(1, 1, 8, 8)
    features[0, 0, 4, 4] = 2.0
    _, coords, scores = head(features)
    torch.testing.assert_close(coords[0, 0], torch.tensor([4.5 / 8, 4.5 / 8]))
    e2 = torch.exp(torch.tensor(2.0))
    torch.testing.assert_close(scores[0, 0], (e2 + 8) / (e2 + 63))


def test_semantic_head_upsampling_steps_follow_strides():
    head = SemanticFPNHead(8, strides=[4, 8, 16, 16], num_classes=3, channels=4, norm_groups=2)
    ups = [sum(isinstance(m, torch.nn.Upsample) for m in h.modules()) for h in head.scale_heads]
    assert ups == [0, 1, 2, 2]  # stride-16 last level: one step fewer than stride 32
    pyramid = [torch.randn(1, 8, 32 // s, 16 // s) for s in (4, 8, 16, 16)]
    assert head(pyramid).shape == (1, 3, 8, 4)
