"""The package's plan, checked from the code's own imports (issues #12, #21 and #33).

Layers, lowest first: a module imports only from its own layer or below, so the folder tree
reads as the pipeline and no import cycle can form, between modules or between folders. The
static import graph includes imports inside functions: a lazy import that dodges a cycle at
run time is still a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "personkit"

#: The layers, lowest first: each a name and its units, the package's folders and top-level
#: modules (``synth`` sits below ``engine``, which renders detector training data with it;
#: ``study`` near the top, as it trains and evaluates).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("files", ("checkpoint", "runtime", "extras", "outputs")),
    ("data", ("data",)),
    ("config", ("config",)),
    ("models", ("models",)),
    ("losses", ("losses",)),
    ("metrics", ("metrics", "report")),
    ("synth", ("synth",)),
    ("engine", ("engine",)),
    ("inference", ("inference",)),
    ("deploy", ("deploy",)),
    ("track", ("track",)),
    ("index", ("index",)),
    ("serve", ("serve",)),
    ("study", ("study", "demo")),
    ("cli", ("cli", "cli_options", "cli_objects", "cli_people", "cli_data", "__main__")),
]
#: unit -> (layer index, layer name)
LAYER_OF = {unit: (i, name) for i, (name, units) in enumerate(LAYERS) for unit in units}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(module: str, node: ast.AST) -> list[str]:
    """The dotted names an import statement of ``module`` reaches (relative ones resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def _imports(module: str) -> set[str]:
    """The personkit modules ``module`` imports (at any depth), parents excluded."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        for name in _imported_names(module, node):
            target = _resolve(name)
            if target and target != "personkit" and not module.startswith(target + "."):
                found.add(target)
    return found - {module}


GRAPH = {m: _imports(m) for m in MODULES}


def _unit(module: str) -> str:
    """``personkit.engine.trainer`` -> ``engine``; ``personkit.cli`` -> ``cli``."""
    return module.split(".")[1]


#: The folder-level graph: unit -> the other units its modules import.
FOLDERS: dict[str, set[str]] = {}
for _m, _targets in GRAPH.items():
    if _m != "personkit":
        FOLDERS.setdefault(_unit(_m), set()).update(_unit(t) for t in _targets)
for _u in FOLDERS:
    FOLDERS[_u].discard(_u)


def _layer(module: str) -> int:
    return LAYER_OF[_unit(module)][0]


def test_every_folder_has_a_layer():
    """Each folder and top-level module is named in exactly one layer, and every named one
    exists."""
    units = {_unit(m) for m in MODULES if m != "personkit"}
    named = [u for _, us in LAYERS for u in us]
    assert sorted(units - set(named)) == []
    assert sorted(set(named) - units) == []
    assert len(named) == len(set(named))


def test_no_module_imports_from_a_higher_layer():
    upward = sorted(f"{m} -> {t} ({LAYER_OF[_unit(m)][1]} below {LAYER_OF[_unit(t)][1]})"
                    for m, targets in GRAPH.items() if m != "personkit"
                    for t in targets if _layer(t) > _layer(m))
    assert upward == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph`` that hold more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


def test_no_folder_cycle():
    """No two folders import each other, even through different modules (``engine`` and
    ``inference`` once did: detector training used the inference detectors, the evaluation of
    exports the trainer's evaluation)."""
    assert _cycles(FOLDERS) == []


def test_the_network_and_the_readers_do_not_import_upward():
    """``models/`` never imports the trainer's package; ``data/`` only ``data/`` (and the
    root file formats); nothing but the top imports ``study`` or the command line."""
    assert {m: sorted(t for t in ts if t.startswith("personkit.engine"))
            for m, ts in GRAPH.items() if m.startswith("personkit.models")} == {
        m: [] for m in GRAPH if m.startswith("personkit.models")}
    for m, targets in GRAPH.items():
        if m.startswith("personkit.data"):
            assert all(t.startswith("personkit.data") or _layer(t) == 0 for t in targets), m
        if not m.startswith(("personkit.study", "personkit.cli", "personkit.__main__")):
            assert not any(t.startswith(("personkit.study", "personkit.cli")) for t in targets), m


def _definitions(names: set[str]) -> dict[str, list[str]]:
    defs: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = ([node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else
                       [t.id for t in node.targets if isinstance(t, ast.Name)]
                       if isinstance(node, ast.Assign) else
                       [node.target.id] if isinstance(node, ast.AnnAssign)
                       and isinstance(node.target, ast.Name) else [])
            for name in set(targets) & names:
                defs.setdefault(name, []).append(str(path.relative_to(PACKAGE)))
    return defs


def test_each_contract_is_defined_once():
    assert _definitions({
        "read_image", "load_model", "load_model_and_config", "flip_tta_embedding",
        "mean_with_mirror", "TASKS", "HEADS", "ALL_HEADS", "resolve_model_file",
        "resolve_device", "require", "MissingExtraError", "output_names", "select_heads",
        "write_text_atomic", "sha256_file", "machine_info", "train_run", "ensure_world",
        "write_json", "atomic_file", "PERSON_LABEL", "DETECTOR_SCORE", "BACKENDS", "Limits",
    }) == {
        "read_image": ["data/io.py"], "load_model": ["models/loading.py"],
        "load_model_and_config": ["models/loading.py"],
        "flip_tta_embedding": ["models/multitask.py"], "mean_with_mirror": ["models/multitask.py"],
        "TASKS": ["models/multitask.py"], "HEADS": ["models/multitask.py"],
        "ALL_HEADS": ["config.py"], "resolve_model_file": ["models/loading.py"],
        "resolve_device": ["runtime.py"], "require": ["extras.py"],
        "MissingExtraError": ["extras.py"], "output_names": ["inference/contract.py"],
        "select_heads": ["inference/contract.py"], "write_text_atomic": ["checkpoint.py"],
        "sha256_file": ["checkpoint.py"], "machine_info": ["runtime.py"],
        "train_run": ["engine/launch.py"], "ensure_world": ["synth/world.py"],
        "write_json": ["checkpoint.py"], "atomic_file": ["checkpoint.py"],
        "PERSON_LABEL": ["data/constants.py"], "DETECTOR_SCORE": ["data/constants.py"],
        "BACKENDS": ["index/people.py"], "Limits": ["serve/settings.py"],
    }


def test_mot_files_are_read_and_written_in_one_place():
    """Every MOT-format reader and writer, and the image listing, in ``data/mot.py``."""
    names = {"read_seqinfo", "mot_images", "read_mot_rows", "MotRows", "check_rows_within",
             "resolve_mot_source", "read_detections", "Detections", "write_mot_results",
             "list_images", "IMAGE_EXTENSIONS", "is_mot_sequence", "seqinfo_frame_rate"}
    assert _definitions(names) == {name: ["data/mot.py"] for name in names}


def test_the_label_table_covers_exactly_the_tasks():
    from personkit.config import ALL_HEADS
    from personkit.data.records import TASK_LABELS

    assert tuple(TASK_LABELS) == ALL_HEADS


def test_flip_averaging_is_written_once():
    """Every flip TTA (evaluation's torch model, the Predictor's engines) goes through
    ``mean_with_mirror``: no other ``(a + b) / 2`` of a mirror's embedding."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name != "multitask.py":
            assert "mirror" not in text or "/ 2" not in text.split("mirror", 1)[1][:200], path


def test_every_module_says_what_it_holds():
    missing = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.stat().st_size and not ast.get_docstring(ast.parse(p.read_text()))]
    assert missing == []


def _is_json_dumps(node: ast.AST) -> bool:
    """``json.dumps(...)``, or ``json.dumps(...) + ...``."""
    if isinstance(node, ast.BinOp):
        return _is_json_dumps(node.left)
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "dumps" and getattr(node.func.value, "id", "") == "json")


def test_every_json_file_is_written_through_one_function():
    """Every JSON file goes through ``checkpoint.write_json`` (atomic; its options keep each
    file's layout): no ``json.dump`` and no ``write_text``/``write_text_atomic`` of a
    ``json.dumps`` elsewhere (JSON lines are other files)."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "checkpoint.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            writes = name in ("write_text", "write_text_atomic") and any(
                _is_json_dumps(a) for a in node.args)
            if writes or (name == "dump" and getattr(node.func, "value", None) is not None
                          and getattr(node.func.value, "id", "") == "json"):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == []
