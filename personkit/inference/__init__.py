"""Inference: the batched :class:`Predictor` and what it stands on, lowest first:
``contract`` (tasks, output names, export metadata), ``preprocess``, ``backends`` (torch, ONNX
Runtime, OpenVINO), ``export`` (ONNX / OpenVINO files), ``predictor``; and ``detectors``
(ONNX detector files, choosing a detector), ``sources``, ``run`` (``personkit predict``),
``visualize``, ``annotate`` (see ``docs/inference.md``). Checking and measuring exports
(parity, int8, evaluation through an engine, ``bench``) is :mod:`personkit.deploy`."""

from personkit.inference.predictor import AttributePrediction, PersonResult, Predictor

__all__ = ["AttributePrediction", "PersonResult", "Predictor"]
