"""Inference: the batched :class:`Predictor` and what it stands on, lowest first:
``contract`` (tasks, output names, export metadata), ``preprocess``, ``backends`` (torch, ONNX
Runtime, OpenVINO), ``quantize`` (int8), ``export`` (ONNX / OpenVINO files and their parity),
``engines`` (evaluation through an engine), ``predictor``; and ``sources``, ``run``
(``personkit predict``), ``visualize``, ``annotate``, ``bench``, ``roofline``
(see ``docs/inference.md``)."""

from personkit.inference.predictor import AttributePrediction, PersonResult, Predictor

__all__ = ["AttributePrediction", "PersonResult", "Predictor"]
