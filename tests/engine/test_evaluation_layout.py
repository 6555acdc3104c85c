"""Evaluation runs one memory format, whatever training used (engine/evaluate.py)."""

from __future__ import annotations

import torch

from personkit.engine.evaluate import in_evaluation_layout
from personkit.models import ModelMeta, MultiTaskModel, ResNetBackbone


def _model() -> MultiTaskModel:
    torch.manual_seed(0)
    meta = ModelMeta((64, 32), (0.5,) * 3, (0.25,) * 3, ("reid",))
    return MultiTaskModel(ResNetBackbone("resnet10t", "group"), ["reid"], meta=meta).eval()


def test_evaluation_runs_a_channels_last_model_on_a_contiguous_copy():
    """Scores must not depend on train.channels_last (see engine.evaluate.in_evaluation_layout):
    the copy computes exactly what the contiguous model does; the trained model is untouched."""
    plain = _model()
    assert in_evaluation_layout(plain) is plain
    trained = _model().to(memory_format=torch.channels_last)
    copy = in_evaluation_layout(trained)
    assert copy is not trained and all(p.is_contiguous() for p in copy.parameters())
    assert not all(p.is_contiguous() for p in trained.parameters())
    x = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(copy(x).embedding, plain(x).embedding)
