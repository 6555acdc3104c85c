"""`personkit search` by attributes or by an entry reads the index only (issue 35): torch and
timm are never imported, path and filter errors are one line before any model loads, and an
image example still loads the model, then."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from index_utils import VOCAB, make_entries

from personkit.index import IndexInfo, PeopleIndex

#: Runs ``personkit.cli.main`` once per argument list in one process; prints, per run, the
#: exit status, stdout and stderr, and which heavy modules were loaded after it.
RUNNER = """
import contextlib, io, json, sys
from personkit.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(argv)
    out.append({"rc": rc, "out": stdout.getvalue(), "err": stderr.getvalue(),
                "loaded": sorted(m for m in ("torch", "timm") if m in sys.modules)})
print(json.dumps(out))
"""


def run_searches(cwd: Path, *argvs: list[str]) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(argvs)], cwd=cwd,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_searches_by_attributes_and_entries_never_import_torch(tmp_path, tiny_checkpoint):
    path = tmp_path / "idx"
    index = PeopleIndex.create_or_open(path, IndexInfo("model-a", 16, VOCAB, {"threshold": 0.2}))
    index.add("cam1", make_entries("cam1", 8))
    index.add("cam2", make_entries("cam2", 8, seed=1))
    image = tmp_path / "person.png"
    cv2.imwrite(str(image), np.zeros((64, 32, 3), np.uint8))
    idx = str(path)
    runs = run_searches(
        tmp_path,
        ["search", idx, "--where", "gender=female backpack=yes", "--out", str(tmp_path / "a")],
        ["search", idx, "--example", "cam1:3", "-k", "2", "--where", "source=cam2"],
        ["search", str(tmp_path / "idz"), "--where", "gender=male"],
        ["search", idx, "--where", "source=cam3"],
        ["search", idx, "--example", "cam1:99"],
        ["search", idx, "--example", str(tmp_path / "missing.jpg")],
        ["search", idx, "--example", str(image), "--model", str(tmp_path / "no.safetensors")],
        ["search", idx, "--example", str(image), "--box", "5,5,1,1", "--model",
         str(tiny_checkpoint)],
        ["search", idx, "--example", str(image), "--model", str(tiny_checkpoint)])
    expected = [index.search(where="gender=female backpack=yes")["hits"],
                index.search(index.get("cam1:3").embedding, "source=cam2", 2)["hits"]]
    for run, hits in zip(runs[:2], expected, strict=True):
        assert run["rc"] == 0 and run["loaded"] == [], run
        assert [line.split(":")[0] + ":" + line.split(":")[1] for line in
                run["out"].splitlines() if line.startswith("cam")] == [h["id"] for h in hits]
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert [h["id"] for h in results["hits"]] == [h["id"] for h in expected[0]]
    errors = ["no people index at", "unknown camera source='cam3' in the filter: the people "
              "index", "no such image file, and no entry of that id", "image file not found",
              "checkpoint not found", "a box is x1,y1,x2,y2"]
    for run, text in zip(runs[2:8], errors, strict=True):
        lines = run["err"].splitlines()
        assert run["rc"] == 2 and len(lines) == 1 and text in lines[0], run
        assert lines[0].startswith("personkit search: error: ") and run["loaded"] == [], run
    assert "has 2 camera(s): 'cam1', 'cam2'" in runs[3]["err"]
    last = runs[-1]  # an image example: the model loads now, and is not this index's
    assert last["rc"] == 2 and "give the model it was built with" in last["err"]
    assert last["loaded"] == ["timm", "torch"]
