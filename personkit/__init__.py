"""personkit: one network for ReID, attributes, pose and body-part segmentation.

``personkit.Predictor`` is imported lazily, so ``import personkit`` stays cheap. Importing
personkit before torch gives a Python program the command line's process defaults
(:func:`personkit.runtime.apply_library_defaults`); importing torch first is warned about once.
"""

from __future__ import annotations

from typing import Any

from personkit.runtime import apply_library_defaults

apply_library_defaults()

__all__ = ["Predictor"]


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from personkit.inference import Predictor

        return Predictor
    raise AttributeError(f"module 'personkit' has no attribute {name!r}")
