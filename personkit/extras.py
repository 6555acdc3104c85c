"""Optional dependencies (the ``personkit[...]`` extras): one import helper, one error.

:func:`require` imports a module of an extra or raises :class:`MissingExtraError` with the
command that installs it; the CLI prints that message instead of a traceback. BoxMOT
(AGPL-3.0) and TrackEval are installed without their declared dependencies, which pull in a
second OpenCV and about 500 MB that the tracker code path never imports (docs/tracking.md).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from types import ModuleType

_EXPORT = "pip install 'personkit[export]'  (onnx + onnxruntime)"
_OPENVINO = "pip install 'personkit[openvino]'  (openvino + nncf)"
_TRACK = "pip install 'personkit[track]' && pip install --no-deps boxmot==25.0.0 trackeval==1.3.0"
_INDEX = "pip install 'personkit[index]'  (lancedb + qdrant-client)"
_STUDY = "pip install 'personkit[study]'  (scikit-learn)"
_SERVE = "pip install 'personkit[serve]'  (fastapi, uvicorn, python-multipart, prometheus-client)"
#: The install command of each optional top-level module.
INSTALL: dict[str, str] = {
    "onnx": _EXPORT, "onnxruntime": _EXPORT, "openvino": _OPENVINO, "nncf": _OPENVINO,
    "boxmot": _TRACK, "trackeval": _TRACK, "av": _TRACK, "lap": _TRACK, "pycocotools": _TRACK,
    "lancedb": _INDEX, "pyarrow": _INDEX, "qdrant_client": _INDEX, "fastapi": _SERVE,
    "uvicorn": _SERVE, "multipart": _SERVE, "prometheus_client": _SERVE, "sklearn": _STUDY,
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message gives the install command."""


def require(module: str) -> ModuleType:
    """Import ``module`` (e.g. ``onnxruntime.quantization``), or raise
    :class:`MissingExtraError` naming it and the command that installs its extra."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise MissingExtraError(f"the optional package {module!r} is not installed ({e}); "
                                f"install it with: "
                                f"{INSTALL.get(top, 'pip install ' + top)}") from e
    if module == "boxmot":  # its logging set-up (INFO) runs when boxmot.utils is imported
        importlib.import_module("boxmot.utils")
        logging.getLogger("boxmot").setLevel(logging.WARNING)
    return mod


def verbose() -> bool:
    """Whether third-party logs are wanted (``--verbose``, or ``PERSONKIT_VERBOSE=1``)."""
    return os.environ.get("PERSONKIT_VERBOSE", "").lower() in ("1", "true", "yes")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep the optional libraries' INFO logs, warnings and progress bars (NNCF, ONNX Runtime's
    quantizer, OpenVINO) out of personkit's output unless :func:`verbose`; their errors still
    show (as exceptions)."""
    if verbose():
        yield
        return
    loggers = [logging.getLogger(n) for n in ("nncf", "onnxruntime", "openvino", "",
                                              "torch.utils.cpp_extension")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # and progress bars printed to stdout (NNCF's)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
