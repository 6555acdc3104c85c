"""``personkit study``: two 20-step rows on the tiny world are trained, evaluated, recorded
and reported; a rerun skips them; bad specs stop before any training, naming the row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from personkit.cli import main
from personkit.engine import study as study_mod
from personkit.engine.study import StudyError, load_study, read_results, run_study
from personkit.engine.study_report import BEGIN, END, verdict

REPO = Path(__file__).resolve().parents[2]
SYNTH = REPO / "configs" / "study" / "synthetic"
SMALL = ["train.iterations=20", "train.log_every=5", "train.checkpoint_every=10",
         "data.train.0.pk_p=4", "model.fpn_channels=32",
         "model.seg_channels=16", "train.device=cpu"]


def _spec(tmp_path: Path, rows: list[dict], **extra) -> Path:
    spec = {"name": "two-rows", "world": {"preset": "tiny", "seed": 0,
                                          "dir": str(tmp_path / "world")},
            "defaults": {"seeds": [0], "overrides": SMALL}, "rows": rows, **extra}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


TWO_ROWS = [
    {"name": "reid", "label": "ReID only", "config": str(SYNTH / "reid.yaml"),
     "fig5": {"curve": "ReID only", "fraction": 1.0}},
    {"name": "multi", "label": "MTL multi-dataset", "config": str(SYNTH / "multi.yaml"),
     "overrides": ["data.train.1.batch_size=4", "data.train.2.batch_size=4"],
     "fig5": {"curve": "MTL multi-dataset", "fraction": 1.0}},
]
TABLES = [{"title": "Table 6 (upper block)", "metrics": {"mAP": "market.reid.mAP",
                                                        "Attr": "market.attributes.mean"},
           "rows": [{"row": "reid"}, {"row": "multi", "baseline": "reid"}]}]
CLAIMS = [{"claim": "MTL helps ReID", "row": "multi", "baseline": "reid",
           "metric": "market.reid.mAP", "expect": "higher"}]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_two_row_study_writes_results_and_resumes(tmp_path, monkeypatch, capsys):
    spec = _spec(tmp_path, TWO_ROWS, tables=TABLES, claims=CLAIMS)
    out, report = tmp_path / "study", tmp_path / "doc.md"
    report.write_text(f"# Doc\n\nintro\n\n{BEGIN}\nold\n{END}\n\nafter\n")
    summary = run_study(spec, out, report=report, progress=False)
    assert summary["ran"] == 2 and summary["skipped"] == 0
    records = read_results(out / "results.jsonl")
    assert [(r["row"], r["seed"]) for r in records] == [("reid", 0), ("multi", 0)]
    for r in records:
        assert 0 <= r["metrics"]["market"]["reid"]["mAP"] <= 1 and r["seconds"]["total"] > 0
        assert len(r["config_hash"]) == 12
        assert (Path(r["run_dir"]) / "model.safetensors").is_file()
    assert "pose" in records[1]["metrics"]["mpii"] and "parts" in records[1]["metrics"]["lip"]
    text = (out / "study.md").read_text()
    assert "Table 6 (upper block)" in text and "MTL helps ReID" in text
    assert "inconclusive" in text  # one seed: no spread
    assert "(vs reid)" in text and " (+" in text or " (-" in text
    assert (out / "fig5.png").stat().st_size > 1000
    doc = report.read_text()
    assert doc.startswith("# Doc\n\nintro") and doc.endswith("after\n") and "old" not in doc
    assert "Table 6 (upper block)" in doc and (tmp_path / "doc_fig5.png").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished row was trained again")

    monkeypatch.setattr(study_mod, "_train", no_training)
    again = run_study(spec, out, progress=False)
    assert again["ran"] == 0 and again["skipped"] == 2
    assert len(read_results(out / "results.jsonl")) == 2

    # killed while training row 2 (after its step-20 checkpoint): it resumes, not restarts
    monkeypatch.undo()
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text(lines[0] + "\n" + lines[1][:40])  # a torn last line
    (Path(records[1]["run_dir"]) / "model.safetensors").unlink()
    capsys.readouterr()
    third = run_study(spec, out, progress=False)
    assert third["ran"] == 1 and third["skipped"] == 1
    assert "resumed from" in capsys.readouterr().out
    again = read_results(out / "results.jsonl")
    assert [r["row"] for r in again] == ["reid", "multi"]
    assert again[1]["metrics"]["market"]["reid"]["mAP"] == records[1]["metrics"]["market"][
        "reid"]["mAP"]


def _error(tmp_path, rows, match):
    with pytest.raises(StudyError, match=match):
        load_study(_spec(tmp_path, rows), tmp_path / "study")
    assert not (tmp_path / "study").exists() and not (tmp_path / "world").exists()


def test_bad_specs_stop_before_training_naming_the_row(tmp_path):
    good = TWO_ROWS[0]
    _error(tmp_path, [good, {**TWO_ROWS[1], "overides": []}], r"row multi: unknown key.*overides")
    _error(tmp_path, [good, {**TWO_ROWS[1], "config": str(tmp_path / "nope.yaml")}],
           r"row multi: base config not found: .*nope\.yaml")
    _error(tmp_path, [good, {**TWO_ROWS[1], "overrides": ["train.iterationz=5"]}],
           r"row multi: .*iterationz")
    _error(tmp_path, [good, {**TWO_ROWS[1], "overrides": ["train.lr=fast"]}],
           r"row multi: .*train\.lr")
    _error(tmp_path, [good, {**TWO_ROWS[1], "init_from": "{run:later}"}],
           r"row multi: \{run:later\} names no earlier training row")
    _error(tmp_path, [good, good], r"row name 'reid' is used twice")
    with pytest.raises(StudyError, match="unknown key"):
        load_study(_spec(tmp_path, [good], figures=[]), tmp_path / "study")


def test_cli_reports_a_bad_spec_without_training(tmp_path, capsys):
    spec = _spec(tmp_path, [{**TWO_ROWS[0], "seeds": "zero"}])
    assert main(["study", str(spec), "--out", str(tmp_path / "study")]) == 2
    assert "row reid: 'seeds' must be" in capsys.readouterr().err


def test_grid_placeholders_and_run_references(tmp_path):
    rows = [TWO_ROWS[0],
            {"name": "lr", "config": str(SYNTH / "reid.yaml"), "grid": {"lr": [0.001, 0.002]},
             "seeds": [0, 1], "overrides": ["train.lr={lr}"],
             "fig5": {"curve": "x", "fraction": "{lr}"}}]
    study = load_study(_spec(tmp_path, rows), tmp_path / "study")
    names = [(j.row, j.seed) for j in study.jobs]
    assert names == [("reid", 0), ("lr[lr=0.001]", 0), ("lr[lr=0.001]", 1),
                     ("lr[lr=0.002]", 0), ("lr[lr=0.002]", 1)]
    lrs = [j.config.train.lr for j in study.jobs[1:]]
    assert lrs == [0.001, 0.001, 0.002, 0.002] and study.jobs[2].config.train.seed == 1
    assert study.jobs[1].config_hash != study.jobs[2].config_hash
    assert study.jobs[3].fig5 == {"curve": "x", "fraction": 0.002}
    assert study.jobs[0].config.data.root == str(tmp_path / "world")
    ref = study_mod._resolve_runs("{run:reid}", study.out, 1, {"reid": [0]}, "w")
    assert ref == str(study.out / "runs" / "reid" / "seed0")


def test_verdicts_follow_the_seed_spread():
    def recs(a, b):
        return [{"row": "m", "seed": s, "metrics": {"x": v}} for s, v in enumerate(a)] + [
            {"row": "b", "seed": s, "metrics": {"x": v}} for s, v in enumerate(b)]
    claim = {"row": "m", "baseline": "b", "metric": "x", "expect": "higher"}
    assert verdict(recs([0.6, 0.62], [0.5, 0.51]), claim)[0] == "holds"
    assert verdict(recs([0.4, 0.41], [0.5, 0.51]), claim)[0] == "does not hold"
    assert verdict(recs([0.6, 0.45], [0.5, 0.5]), claim)[0] == "inconclusive"
    assert verdict(recs([0.6], [0.5]), claim)[0] == "inconclusive"
    assert verdict(recs([], [0.5]), claim)[0] == "not run"
    assert json.dumps(verdict(recs([0.6, 0.62], [0.5, 0.51]), claim))


def test_shipped_specs_are_well_formed(tmp_path):
    """Every shipped spec validates up front (configs, overrides, placeholders, claims):
    paper.yaml on the synthetic world, real.yaml on configs/paper/."""
    specs = REPO / "configs" / "study"
    quick = load_study(specs / "quick.yaml", tmp_path / "q")
    assert len(quick.jobs) == 4 and quick.world == {"preset": "tiny", "seed": 0}
    for name in ("paper.yaml", "real.yaml"):
        study = load_study(specs / name, tmp_path / name)
        assert study.jobs, name
        spec = yaml.safe_load((specs / name).read_text())
        rows = {r["name"] for r in spec["rows"]}
        for r in spec["rows"]:
            if r.get("config"):
                assert (specs / r["config"]).is_file(), f"{name}: {r['config']}"
        for c in spec["claims"]:
            assert c["row"].split("[")[0] in rows and c["baseline"].split("[")[0] in rows


@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path):
    """configs/study/quick.yaml as shipped: the tiny world, four runs, the report."""
    out = tmp_path / "study-quick"
    assert main(["study", str(REPO / "configs/study/quick.yaml"), "--out", str(out),
                 "--no-progress"]) == 0
    records = read_results(out / "results.jsonl")
    assert sorted((r["row"], r["seed"]) for r in records) == [
        ("multi", 0), ("multi", 1), ("reid", 0), ("reid", 1)]
    assert all(0 < r["metrics"]["market"]["reid"]["mAP"] <= 1 for r in records)
    text = (out / "study.md").read_text()
    assert "Table 6 (upper block)" in text and "Runs recorded: 4 of 4" in text
    assert (out / "fig5.png").is_file()


def test_rows_built_on_a_run_change_with_it(tmp_path):
    rows = [TWO_ROWS[0], {"name": "ft", "config": str(SYNTH / "reid.yaml"),
                          "overrides": ["train.lr={run:reid}"]}]
    with pytest.raises(StudyError, match="row ft: .*train.lr"):  # a path is no learning rate
        load_study(_spec(tmp_path, rows), tmp_path / "s")
    rows[1]["overrides"] = ["data.train.0.options={note: '{run:reid}'}"]
    a = load_study(_spec(tmp_path, rows), tmp_path / "s").jobs
    rows[0] = {**TWO_ROWS[0], "overrides": ["train.lr=0.01"]}
    b = load_study(_spec(tmp_path, rows), tmp_path / "s").jobs
    assert a[0].config_hash != b[0].config_hash
    assert config_hash_of(a[1]) == config_hash_of(b[1])  # same config ...
    assert a[1].config_hash != b[1].config_hash  # ... but built on a different run


def config_hash_of(job):
    return study_mod.config_hash(job.config)
