"""Puts ``tests/`` on ``sys.path`` so that test helpers shared across folders (``baselines``)
import by name: pytest runs with ``--import-mode=importlib``, which does not."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
