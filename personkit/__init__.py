"""personkit: one network for ReID, attributes, pose and body-part segmentation.

``personkit.Predictor`` is imported lazily, so ``import personkit`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Predictor"]


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from personkit.inference import Predictor

        return Predictor
    raise AttributeError(f"module 'personkit' has no attribute {name!r}")
