"""``personkit study``: two 20-step rows on the tiny world are trained, evaluated, recorded
and reported; a rerun skips them; bad specs stop before any training, naming the row."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from personkit.cli import main
from personkit.study import StudyError, load_study, read_results, run_study
from personkit.study import jobs as jobs_mod
from personkit.study import spec as spec_mod
from personkit.study.report import markers, verdict

REPO = Path(__file__).resolve().parents[2]
SYNTH = REPO / "configs" / "study" / "synthetic"
# The runner is under test, not learning: short runs on half-size crops.
HALF = "[64, 32]"
SMALL = ["train.iterations=20", "train.log_every=5", "train.checkpoint_every=10",
         "data.train.0.pk_p=4", "model.fpn_channels=32",
         "model.seg_channels=16", "train.device=cpu", f"model.input_size={HALF}",
         f"data.train.0.input_size={HALF}", f"data.eval.0.input_size={HALF}"]
SMALL_BODY = [f"data.{part}.{i}.input_size=[48, 48]" for part in ("train", "eval")
              for i in (1, 2)]


def _spec(tmp_path: Path, rows: list[dict], world: Path | None = None, **extra) -> Path:
    """A spec on the tiny world: ``world`` (the session's, read only) or one of its own."""
    spec = {"name": "two-rows", "world": {"preset": "tiny", "seed": 0,
                                          "dir": str(world or tmp_path / "world")},
            "defaults": {"seeds": [0], "overrides": SMALL}, "rows": rows, **extra}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


TWO_ROWS = [
    {"name": "reid", "label": "ReID only", "config": str(SYNTH / "reid.yaml"),
     "fig5": {"curve": "ReID only", "fraction": 1.0}},
    {"name": "multi", "label": "MTL multi-dataset", "config": str(SYNTH / "multi.yaml"),
     "overrides": ["data.train.1.batch_size=4", "data.train.2.batch_size=4", *SMALL_BODY],
     "fig5": {"curve": "MTL multi-dataset", "fraction": 1.0}},
]
TABLES = [{"title": "Table 6 (upper block)", "metrics": {"mAP": "market.reid.mAP",
                                                        "Attr": "market.attributes.mean"},
           "rows": [{"row": "reid"}, {"row": "multi", "baseline": "reid"}]}]
CLAIMS = [{"claim": "MTL helps ReID", "row": "multi", "baseline": "reid",
           "metric": "market.reid.mAP", "expect": "higher"}]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_two_row_study_writes_results_and_resumes(tmp_path, tiny_world_dir, monkeypatch, capsys):
    spec = _spec(tmp_path, TWO_ROWS, tiny_world_dir, tables=TABLES, claims=CLAIMS)
    out, report = tmp_path / "study", tmp_path / "doc.md"
    begin, end = markers("two-rows")
    report.write_text(f"# Doc\n\nintro\n\n{begin}\nold\n{end}\n\nafter\n")
    summary = run_study(spec, out, report=report, progress=False)
    assert summary["ran"] == 2 and summary["skipped"] == 0
    records = read_results(out / "results.jsonl")
    assert [(r["row"], r["seed"]) for r in records] == [("reid", 0), ("multi", 0)]
    for r in records:
        assert 0 <= r["metrics"]["market"]["reid"]["mAP"] <= 1 and r["seconds"]["total"] > 0
        assert r["sharing"]["jobs"] == 1 and r["sharing"]["threads"] >= 1
        assert len(r["config_hash"]) == 12
        assert (Path(r["run_dir"]) / "model.safetensors").is_file() and r["resumed"] is False
        # trained in this process, like `personkit train`: the run has its identity file
        run_file = json.loads((Path(r["run_dir"]) / "run.json").read_text())
        assert run_file["start_step"] == 0 and run_file["resumed_from"] is None
    assert "pose" in records[1]["metrics"]["mpii"] and "parts" in records[1]["metrics"]["lip"]
    text = (out / "study.md").read_text()
    assert "Table 6 (upper block)" in text and "MTL helps ReID" in text
    assert "inconclusive" in text  # one seed: no spread
    assert "(vs reid)" in text and " (+" in text or " (-" in text
    assert (out / "fig5.png").stat().st_size > 1000
    doc = report.read_text()
    assert doc.startswith("# Doc\n\nintro") and doc.endswith("after\n") and "old" not in doc
    assert "Table 6 (upper block)" in doc and (tmp_path / "doc_two-rows_fig5.png").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished row was trained again")

    monkeypatch.setattr(jobs_mod, "_train", no_training)
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
    assert again[1]["resumed"] is True  # its time before the kill is in no record: say so
    assert "1 run resumed after an interruption" in (out / "study.md").read_text()
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
    _error(tmp_path, [good, {**TWO_ROWS[1], "overrides": ["model.pose_features=fpn",
                                                         "model.sharing=split"]}],
           r"row multi: .*'model\.pose_features' fpn needs 'model\.sharing' single")
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
    ref = spec_mod._resolve_runs("{run:reid}", study.out, 1,
                                 {"reid": {0: study.jobs[0].config_hash}}, "w")
    assert ref == str(study.out / "runs" / "reid" / f"seed0-{study.jobs[0].config_hash}")


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
    # the reference names the upstream run's own folder (one per config hash) ...
    assert a[0].config_hash in a[1].config.data.train[0].options["note"]
    assert b[0].config_hash in b[1].config.data.train[0].options["note"]
    assert a[1].config_hash != b[1].config_hash  # ... so a row built on it changes with it


# ------------------------------------------------------------------------- --jobs N (parallel)

TEN = "train.iterations=10"
PARALLEL_ROWS = [
    {"name": "reid", "config": str(SYNTH / "reid.yaml"), "overrides": [TEN]},
    {"name": "reid_lr", "config": str(SYNTH / "reid.yaml"), "overrides": [TEN, "train.lr=0.002"]},
    {"name": "ft", "config": str(SYNTH / "reid.yaml"), "overrides": [TEN],
     "init_from": "{run:reid}"},
]
RECORD_KEYS = {"row", "seed", "config_hash", "kind", "finished", "metrics", "run_dir", "seconds",
               "loadavg", "sharing", "resumed", "world"}


@pytest.mark.slow  # 21 s; `make test` keeps --jobs 2's scheduling (the failed-row test)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_parallel_study_records_what_a_sequential_one_would(tmp_path, tiny_world_dir, capsys):
    """--jobs 2: two independent rows start together, the row built on `reid` starts only
    after it finished; the records are those of --jobs 1; a rerun skips every job."""
    spec, out = _spec(tmp_path, PARALLEL_ROWS, tiny_world_dir), tmp_path / "study"
    assert main(["study", str(spec), "--out", str(out), "--jobs", "2", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()

    def at(text):
        return next(i for i, line in enumerate(lines) if text in line)

    assert at("reid_lr seed 0: train ... (slot 1, log: ") < at("reid seed 0: finished")
    assert at("reid seed 0: finished") < at("ft seed 0: train ... (slot ")
    records = read_results(out / "results.jsonl")
    jobs = load_study(spec, out).jobs
    assert sorted((r["row"], r["seed"], r["config_hash"]) for r in records) == sorted(
        j.key for j in jobs)
    assert [r["row"] for r in records][-1] == "ft"
    for r in records:
        assert set(r) == RECORD_KEYS and r["kind"] == "train"
        assert 0 <= r["metrics"]["market"]["reid"]["mAP"] <= 1
        assert r["seconds"]["total"] >= r["seconds"]["train"] > 0 and len(r["loadavg"]) == 3
        assert r["sharing"] == {"jobs": 2, "threads": 1}
        rdir = Path(r["run_dir"])
        assert (rdir / "model.safetensors").is_file()
        assert not (rdir / "study_record.json").exists()
        log = (rdir / "study.log").read_text()
        assert "OMP_NUM_THREADS=1" in log and "finished in" in log  # the user's setting wins
    (ft_dir,) = (out / "runs" / "ft").glob("seed0-*")
    assert "init_from" in (ft_dir / "study.log").read_text()
    assert ("Runs recorded: 3 of 3" in (md := (out / "study.md").read_text())
            and "3 runs 2 at a time with 1 torch thread each" in md)

    assert main(["study", str(spec), "--out", str(out), "--jobs", "2", "--no-progress"]) == 0
    again = capsys.readouterr().out
    assert again.count("done, skipped") == 3 and "train ..." not in again
    assert len(read_results(out / "results.jsonl")) == 3


def test_parallel_study_stops_at_a_failed_row(tmp_path, tiny_world_dir, capsys):
    """A failing job: nothing recorded for it, its dependents not started, exit 1 naming it
    and its log."""
    rows = [{"name": "broken", "config": str(SYNTH / "reid.yaml"),
             "init_from": str(tmp_path / "no_such_run")},
            {"name": "ft", "config": str(SYNTH / "reid.yaml"), "init_from": "{run:broken}"}]
    spec, out = _spec(tmp_path, rows, tiny_world_dir), tmp_path / "study"
    assert main(["study", str(spec), "--out", str(out), "--jobs", "2", "--no-progress"]) == 1
    err = capsys.readouterr().err
    (broken,) = (out / "runs" / "broken").glob("seed0-*")
    log = broken / "study.log"
    assert f"row broken seed 0 failed (exit 2); its log: {log}" in err
    assert "row ft seed 0 not started" in err
    assert "no_such_run" in log.read_text()
    assert read_results(out / "results.jsonl") == []
    assert not (out / "runs" / "ft").exists()


def test_jobs_and_nproc_together_are_refused(tmp_path, capsys):
    spec = _spec(tmp_path, PARALLEL_ROWS[:1])
    assert main(["study", str(spec), "--out", str(tmp_path / "s"), "--jobs", "2",
                 "--nproc", "2"]) == 2
    assert "--jobs 2 with --nproc 2" in capsys.readouterr().err


def test_dependencies_of_the_paper_study(tmp_path):
    """configs/study/paper.yaml under --jobs N: the auto rows wait for auto_labels (which waits
    for everything before it), finetune also for mpii_pretrain, the other rows only for the
    annotate job before them."""
    jobs = load_study(REPO / "configs" / "study" / "paper.yaml", tmp_path / "p").jobs
    deps = spec_mod.job_dependencies(jobs)
    index = {}
    for i, j in enumerate(jobs):
        index.setdefault(j.row.split("[")[0], set()).add(i)
    (labels,) = index["auto_labels"]
    assert deps[min(index["annotator"])] == set() and deps[labels] == set(range(labels))
    for name, rows in index.items():
        for i in rows:
            if name == "finetune":
                assert deps[i] == {labels} | index["mpii_pretrain"]
            elif name not in ("annotator", "auto_labels"):
                assert deps[i] == {labels}, name
    assert all(jobs[i].refs == ("mpii_pretrain",) for i in index["finetune"])


def test_slot_environment():
    from personkit.study.parallel import slot_env

    env = slot_env(3, 2, environ={}, cpus=2, cuda_devices=2)
    assert env["OMP_NUM_THREADS"] == "1" and env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["TQDM_MININTERVAL"] == "10"
    assert slot_env(0, 3, environ={}, cpus=16)["OMP_NUM_THREADS"] == "5"
    assert slot_env(0, 4, environ={}, cpus=2)["OMP_NUM_THREADS"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in slot_env(0, 2, environ={}, cpus=2)
    user = slot_env(1, 2, environ={"OMP_NUM_THREADS": "3", "CUDA_VISIBLE_DEVICES": "5"},
                    cpus=8, cuda_devices=4)
    assert user["OMP_NUM_THREADS"] == "3" and user["CUDA_VISIBLE_DEVICES"] == "5"


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")
def test_an_interrupt_stops_every_child_and_its_children(tmp_path):
    """stop_all (Ctrl-C / SIGTERM of the parent) ends each child's process group."""
    import signal as sig
    import subprocess
    import sys
    import time

    from personkit.study.parallel import _Running, _Scheduler

    sched = _Scheduler.__new__(_Scheduler)
    sched.study = load_study(_spec(tmp_path, PARALLEL_ROWS), tmp_path / "s")
    pidfile = tmp_path / "grandchild.pid"
    code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', "
            "'import time; time.sleep(60)']); open(sys.argv[1], 'w').write(str(p.pid)); "
            "time.sleep(60)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(pidfile)],
                              start_new_session=True)]
    sched.running = [_Running(0, 0, procs[0], open(tmp_path / "log", "w"), time.perf_counter())]
    deadline = time.monotonic() + 30
    while not pidfile.is_file() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    sched.stop_all()
    assert procs[0].returncode == -sig.SIGTERM and sched.running == []
    stat = Path(f"/proc/{grandchild}/stat")
    for _ in range(100):  # the grandchild was signalled too (gone, or a zombie until reaped)
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] in "ZX":
                break
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.05)
    else:
        os.kill(grandchild, sig.SIGKILL)
        raise AssertionError("the child's own child survived")


@pytest.mark.slow
def test_bias_study_quick_variant_end_to_end(tmp_path):
    """configs/study/bias.yaml shrunk: the tiny world at bias 0, 0.5 and 1, two seeds, 20-step
    rows, two jobs at a time; every row recorded on its own world, the report with intervals,
    the dose-response figure and a verdict per claim."""
    spec = yaml.safe_load((REPO / "configs/study/bias.yaml").read_text())
    spec["world"] = {"preset": "tiny", "seed": 0}
    spec["defaults"] = {"seeds": [0, 1], "overrides": ["model.num_ids=120"]}
    pose = ["data.train.0.batch_size=4", "data.train.0.input_size=[48, 48]",
            "data.eval.0.input_size=[48, 48]", "train.iterations=20", "model.fpn_channels=32",
            "model.seg_channels=16"]
    for row in spec["rows"]:
        row["config"] = str(REPO / "configs/study" / row["config"])
        multi = row["config"].endswith("multi.yaml")
        row["overrides"] = row.get("overrides", []) + (
            pose if row["name"] == "mpii_pretrain" else SMALL + (
                ["data.train.1.batch_size=4", "data.train.2.batch_size=4", *SMALL_BODY]
                if multi else []))
    path = tmp_path / "bias-quick.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "study"
    assert main(["study", str(path), "--out", str(out), "--jobs", "2", "--no-progress"]) == 0
    records = read_results(out / "results.jsonl")
    assert len(records) == 32
    bias = {r["row"]: (r["world"] or {}).get("bias", 0.0) for r in records}
    assert bias["multi_bn[bias=0.5]"] == 0.5 and bias["finetune"] == 1.0
    assert bias["reid_gn[bias=0]"] == 0.0
    for name in ("data", "data-bias0.5", "data-bias1"):
        assert (out / name / "personkit_synth.json").is_file()
    text = (out / "study.md").read_text()
    assert "Runs recorded: 32 of 32" in text and "Dose response" in text
    assert "95 % CI [" in text and "sign rule:" in text
    assert (out / "dose0.png").stat().st_size > 1000
