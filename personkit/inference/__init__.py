"""Inference product: the batched :class:`Predictor`, input sources, overlays, ONNX export
and the speed benchmark (see ``docs/inference.md``)."""

from personkit.inference.predictor import AttributePrediction, PersonResult, Predictor

__all__ = ["AttributePrediction", "PersonResult", "Predictor"]
