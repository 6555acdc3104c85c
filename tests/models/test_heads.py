"""Head building blocks: soft-argmax half-cell convention, segmentation head structure."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from personkit.models.heads import SemanticFPNHead, soft_argmax_2d


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


def test_semantic_head_upsampling_steps_follow_strides():
    head = SemanticFPNHead(8, strides=[4, 8, 16, 16], num_classes=3, channels=4, norm_groups=2)
    ups = [sum(isinstance(m, torch.nn.Upsample) for m in h.modules()) for h in head.scale_heads]
    assert ups == [0, 1, 2, 2]  # stride-16 last level: one step fewer than stride 32
    pyramid = [torch.randn(1, 8, 32 // s, 16 // s) for s in (4, 8, 16, 16)]
    assert head(pyramid).shape == (1, 3, 8, 4)
