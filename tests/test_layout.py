"""The import graph keeps each concept in one place (issue #12)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "personkit"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_inference_does_not_import_build():
    """Models come from ``personkit.models.loading``; config -> objects stays in build.py,
    whose callers are the CLI, the demo and the trainer."""
    offenders = {p.name: sorted(i for i in _imports(p) if i.startswith("personkit.build"))
                 for p in (PACKAGE / "inference").glob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_one_image_reader_and_one_model_loader():
    defs = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name in (
                    "read_image", "load_model", "load_model_and_config", "flip_tta_embedding",
                    "mean_with_mirror"):
                defs.setdefault(node.name, []).append(str(path.relative_to(PACKAGE)))
    assert defs == {"read_image": ["data/io.py"], "load_model": ["models/loading.py"],
                    "load_model_and_config": ["models/loading.py"],
                    "flip_tta_embedding": ["models/multitask.py"],
                    "mean_with_mirror": ["models/multitask.py"]}


def test_flip_averaging_is_written_once():
    """Every flip TTA (evaluation's torch model, the Predictor's engines) goes through
    ``mean_with_mirror``: no other ``(a + b) / 2`` of a mirror's embedding."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name != "multitask.py":
            assert "mirror" not in text or "/ 2" not in text.split("mirror", 1)[1][:200], path
