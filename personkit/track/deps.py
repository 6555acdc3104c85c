"""The optional tracking dependencies (``personkit[track]``): a clear error when they are missing.

BoxMOT (AGPL-3.0) and TrackEval are installed without their declared dependencies, which pull
in a second OpenCV and about 500 MB that the tracker code path never imports; see
docs/tracking.md.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

INSTALL = ("pip install 'personkit[track]' && "
           "pip install --no-deps boxmot==25.0.0 trackeval==1.3.0")


class TrackingExtraMissing(ImportError):
    """A package of the tracking extra is not installed."""


def require(module: str) -> ModuleType:
    """Import ``module`` of the tracking extra, or raise :class:`TrackingExtraMissing` with the
    install command."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise TrackingExtraMissing(
            f"personkit tracking needs the optional package {module!r} ({e}); install the "
            f"tracking extra with: {INSTALL}") from e
    if module == "boxmot":  # its logging set-up (INFO) runs when boxmot.utils is imported
        importlib.import_module("boxmot.utils")
        logging.getLogger("boxmot").setLevel(logging.WARNING)
    return mod
