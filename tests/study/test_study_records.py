"""A study record is bound to what produced it (issue #22, items 1, 2, 6 and 12): the world,
the row's resolved config and the run directory that holds its model; a changed world or
config reruns, an earlier run is never deleted, and a damaged ``results.jsonl`` costs nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from personkit.config import load_config
from personkit.study import StudyError, load_study, read_results, run_study

REPO = Path(__file__).resolve().parents[2]
REID = str(REPO / "configs" / "study" / "synthetic" / "reid.yaml")
HALF = "[64, 32]"
FAST = ["train.iterations=4", "train.log_every=2", "train.checkpoint_every=0",
        "data.train.0.pk_p=4", "train.device=cpu", f"model.input_size={HALF}",
        f"data.train.0.input_size={HALF}", f"data.eval.0.input_size={HALF}"]


def _spec(path: Path, world: dict, rows: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"name": "bound", "world": world,
                                    "defaults": {"seeds": [0], "overrides": FAST},
                                    "rows": rows}, sort_keys=False))
    return path


def test_another_world_gives_every_job_another_key(tmp_path):
    """The world's preset, seed and generator version are in every job's hash: a study whose
    world changed reruns its rows instead of reporting records trained on the old world."""
    rows = [{"name": "reid", "config": REID}]
    world = {"preset": "tiny", "seed": 0, "dir": str(tmp_path / "world")}
    a = load_study(_spec(tmp_path / "a.yaml", world, rows), tmp_path / "s").jobs[0]
    b = load_study(_spec(tmp_path / "b.yaml", {**world, "seed": 1}, rows), tmp_path / "s").jobs[0]
    assert a.config.data.root == b.config.data.root  # the same folder, another world in it
    assert a.config_hash != b.config_hash


@pytest.mark.slow  # ~6 s of training; make test's time (issue 38 stop)
def test_a_record_never_outlives_its_run(tmp_path, tiny_world_dir, capsys):
    """Config A, then B, then A again: A's run is kept in its own folder, the third study
    reuses it, and the report shows A's record; a damaged results.jsonl loses nothing."""
    world = {"preset": "tiny", "seed": 0, "dir": str(tiny_world_dir)}
    out = tmp_path / "study"

    def run(lr: float) -> dict:
        rows = [{"name": "reid", "config": REID, "overrides": [f"train.lr={lr}"]}]
        return run_study(_spec(tmp_path / "spec.yaml", world, rows), out, progress=False)

    assert run(1e-3)["ran"] == 1
    first = read_results(out / "results.jsonl")[0]
    assert run(2e-3)["ran"] == 1  # B trains in a folder of its own ...
    assert Path(first["run_dir"]).is_dir()  # ... and A's run is still there
    capsys.readouterr()
    assert run(1e-3)["ran"] == 0 and "done, skipped" in capsys.readouterr().out
    again = read_results(out / "results.jsonl")
    assert len(again) == 2 and len({r["run_dir"] for r in again}) == 2
    cfg = load_config(Path(first["run_dir"]) / "config.yaml")
    assert cfg.train.lr == 1e-3  # the run behind the record is the record's config
    md = (out / "study.md").read_text()
    assert "Runs recorded: 1 of 1" in md  # B's record is history, not a result of this spec

    with open(out / "results.jsonl", "a", encoding="utf-8") as f:
        f.write('{"row": "reid", "seed": 0, "con\n')  # a torn line that ends in a newline
        f.write("[1, 2]\n")  # JSON, but not a record
        f.write('{"row": "reid", "seed": "zero"}\n')  # a record of the wrong shape
    capsys.readouterr()
    assert run(1e-3)["ran"] == 0
    err = capsys.readouterr().err
    assert "results.jsonl:3: moved to results.rejected.jsonl: not JSON" in err
    assert "results.jsonl:5: moved to results.rejected.jsonl: missing or mistyped" in err
    assert len((out / "results.rejected.jsonl").read_text().splitlines()) == 3
    assert read_results(out / "results.jsonl") == again  # the records are all kept


@pytest.mark.parametrize(("change", "message"), [
    ({"overrides": "train.lr=1"}, r"spec\.yaml: row reid: 'overrides' must be a list of strings"),
    ({"fig5": {"curve": "c", "fraction": "abc"}},
     r"spec\.yaml: row reid: fig5\.fraction must be a number, got 'abc'"),
])
def test_spec_values_of_the_wrong_type_name_the_spec_and_row(tmp_path, change, message):
    rows = [{"name": "reid", "config": REID, **change}]
    spec = _spec(tmp_path / "spec.yaml", {"preset": "tiny", "dir": str(tmp_path / "w")}, rows)
    with pytest.raises(StudyError, match=message):
        load_study(spec, tmp_path / "s")


def test_record_lines_are_checked_for_shape(tmp_path):
    path = tmp_path / "results.jsonl"
    good = {"row": "r", "seed": 0, "config_hash": "abc", "kind": "train", "seconds": {}}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"row": "r"}) + "\n")
    with pytest.warns(UserWarning, match=r"results\.jsonl:2: skipped, missing or mistyped"):
        assert read_results(path) == [good]
