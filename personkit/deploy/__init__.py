"""Deployment checks and measurements, a layer above :mod:`personkit.engine` (the official
evaluation) and :mod:`personkit.inference` (the Predictor, its engines and exports):
``export`` (``personkit export``: the files checked against PyTorch, int8 copies), ``quantize``
(int8 calibration, quantization and its parity), ``engines`` (``personkit eval`` through ONNX
Runtime, OpenVINO and int8 exports), ``bench`` (``personkit bench``) and ``roofline`` (the
machine's GEMM ceiling, FLOPs per crop); see ``docs/inference.md``."""
