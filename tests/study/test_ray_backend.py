"""``personkit study --backend ray`` (issue 39) on one local Ray instance with 2 CPUs, started
once for the module: a study with a dependency gives the records of ``--backend local``, a
worker killed mid-training is retried and resumes from its checkpoint, a rerun skips every
job; bad input is refused before anything runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from personkit.cli import main
from personkit.study import ray_backend as rb
from personkit.study import read_results

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
REID = str(REPO / "configs" / "study" / "synthetic" / "reid.yaml")
HALF = "[64, 32]"
# The back-end is under test, not learning: 4 steps on half-size crops, a checkpoint at step 2.
FAST = ["train.iterations=4", "train.log_every=2", "train.checkpoint_every=2",
        "data.train.0.pk_p=4", "train.device=cpu", f"model.input_size={HALF}",
        f"data.train.0.input_size={HALF}", f"data.eval.0.input_size={HALF}"]
KILLED = "reid"  # the row whose first attempt kills its own Ray worker (rb.KILL_VAR)
ROWS = [{"name": KILLED, "config": REID},
        {"name": "ft", "config": REID, "init_from": "{run:reid}"}]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs, no dashboard) for the module; its workers inherit KILL_VAR and
    import personkit while the first test trains in this process (saves ~4 s per worker)."""
    old = os.environ.get(rb.KILL_VAR)
    os.environ[rb.KILL_VAR] = KILLED
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
             object_store_memory=rb.LOCAL_OBJECT_STORE)
    warm = ray.remote(rb._node_name)  # any function of the module: its worker imports it
    refs = [warm.remote({}) for _ in range(2)]
    yield ray
    ray.get(refs)
    ray.shutdown()
    if old is None:
        os.environ.pop(rb.KILL_VAR, None)
    else:
        os.environ[rb.KILL_VAR] = old


def _spec(tmp_path: Path, world: Path, rows: list[dict], name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"name": "ray", "world": {"preset": "tiny", "seed": 0,
                                                            "dir": str(world)},
                                    "defaults": {"seeds": [0], "overrides": FAST},
                                    "rows": rows}, sort_keys=False))
    return path


def _study(spec: Path, out: Path, *extra: str) -> int:
    return main(["study", str(spec), "--out", str(out), "--no-progress", *extra])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ray_records_are_the_local_ones_after_a_killed_worker(
        tmp_path, tiny_world_dir, local_ray, one_torch_thread, capsys):
    """reid's worker is SIGKILLed right after its step-2 checkpoint: Ray retries it, it resumes
    from that checkpoint; ft (built on reid) starts only after reid finished; the records are
    those of --backend local (bit for bit at one torch thread, as resuming repeats the steps
    exactly); a rerun skips both jobs."""
    spec, out = _spec(tmp_path, tiny_world_dir, ROWS), tmp_path / "study"
    assert _study(spec, out) == 0  # --backend local (while the Ray workers start)
    local = {r["row"]: r for r in read_results(out / "results.jsonl")}
    shutil.move(out, tmp_path / "study-local")  # the same --out for both (in ft's hash)
    capsys.readouterr()
    assert _study(spec, out, "--backend", "ray", "--max-retries", "1") == 0
    lines = capsys.readouterr().out.splitlines()

    def at(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    assert at("reid seed 0: train ... (node ") < at("attempt 2: its worker was lost")
    assert at("attempt 2: its worker was lost") < at("reid seed 0: finished in")
    assert at("reid seed 0: finished in") < at("ft seed 0: train ... (node ")
    records = {r["row"]: r for r in read_results(out / "results.jsonl")}
    rdir = Path(records[KILLED]["run_dir"])
    assert (rdir / "killed-by-test").read_text().strip() == "step_00000002.pt"
    run_file = json.loads((rdir / "run.json").read_text())
    assert run_file["start_step"] == 2 and run_file["resumed_from"].endswith("step_00000002.pt")
    assert records[KILLED]["resumed"] is True and records["ft"]["resumed"] is False
    assert "resumed from" in (rdir / "study.log").read_text()
    assert sorted(local) == sorted(records)
    for row, r in records.items():
        assert set(r) == set(local[row])
        same = ("seed", "config_hash", "kind", "world", "run_dir")
        assert {k: r[k] for k in same} == {k: local[row][k] for k in same}
        assert r["metrics"] == local[row]["metrics"]
        assert r["sharing"] == {"jobs": 2, "threads": 1}

    assert _study(spec, out, "--backend", "ray") == 0  # a rerun skips every recorded job
    again = capsys.readouterr().out
    assert again.count("done, skipped") == 2 and "train ..." not in again
    assert len(read_results(out / "results.jsonl")) == 2


@pytest.mark.slow
def test_a_worker_lost_more_often_than_retried_fails_its_job(tmp_path, tiny_world_dir,
                                                             local_ray, capsys):
    """--max-retries 0: reid's killed worker fails the job; ft, which waits for it, is not
    started; exit 1 naming both; nothing recorded."""
    spec, out = _spec(tmp_path, tiny_world_dir, ROWS), tmp_path / "study"
    assert _study(spec, out, "--backend", "ray", "--max-retries", "0") == 1
    captured = capsys.readouterr()
    log = next((out / "runs" / "reid").glob("seed0-*")) / "study.log"
    assert (f"row reid seed 0 failed (WorkerCrashedError: its worker died in each of 1 "
            f"attempts); its log: {log}") in captured.err
    assert "row ft seed 0 not started" in captured.err
    assert "ft seed 0: not started (waits for reid seed 0, failed)" in captured.out
    assert read_results(out / "results.jsonl") == []


def test_a_job_no_node_can_hold_is_refused_naming_its_row(tmp_path, tiny_world_dir, local_ray,
                                                          capsys):
    rows = [{"name": "reid", "config": REID},
            {"name": "big", "config": REID, "resources": {"gpus": 1}}]
    spec, out = _spec(tmp_path, tiny_world_dir, rows), tmp_path / "study"
    assert _study(spec, out, "--backend", "ray") == 2
    err = capsys.readouterr().err
    assert "row big: a job needs 1 CPUs and 1 GPUs, more than any node" in err
    assert "2 CPUs, 0 GPUs" in err
    assert _study(spec, out, "--backend", "ray", "--cpus-per-job", "3") == 2
    assert "row reid: a job needs 3 CPUs and 0 GPUs" in capsys.readouterr().err
    assert not (out / "runs").exists() and not (out / "results.jsonl").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_options_are_refused(tmp_path, tiny_world_dir, capsys):
    spec, out = _spec(tmp_path, tiny_world_dir, ROWS[:1]), tmp_path / "study"
    port = _free_port()
    assert _study(spec, out, "--backend", "ray", "--address", f"127.0.0.1:{port}") == 2
    assert (f"--address 127.0.0.1:{port}: no Ray cluster answers there"
            in capsys.readouterr().err)
    assert _study(spec, out, "--backend", "ray", "--jobs", "2") == 2
    assert "--backend ray with --jobs 2: Ray places the jobs" in capsys.readouterr().err
    assert _study(spec, out, "--address", "auto") == 2
    assert "--address needs --backend ray" in capsys.readouterr().err
    assert _study(spec, out, "--backend", "ray", "--gpus-per-job", "-1") == 2
    assert "--gpus-per-job must be >= 0, got -1" in capsys.readouterr().err
    assert not (out / "results.jsonl").exists() and not (out / "runs").exists()


def test_a_node_that_cannot_see_out_is_named(tmp_path):
    """The marker exchange's verdict (one node per way it can fail); on one machine every
    node sees the folder, so the real check passes in the test above."""
    folder, token = tmp_path / ".ray-storage-check", "abc"
    folder.mkdir()
    (folder / "node-good").write_text(token + "\n")
    (folder / "node-unseen").write_text("other\n")
    answers = {"good": ("a (10.0.0.1)", (token, None)),
               "blind": ("b (10.0.0.2)", (None, f"cannot read {folder}/driver (No such file)")),
               "unseen": ("c (10.0.0.3)", (token, None)),
               "gone": ("d (10.0.0.4)", "no answer (GetTimeoutError)")}
    problems = rb.storage_problems(folder, token, answers)
    assert problems == [f"b (10.0.0.2): cannot read {folder}/driver (No such file)",
                        f"c (10.0.0.3): wrote a marker the driver cannot see "
                        f"({folder}/node-unseen)",
                        "d (10.0.0.4): no answer (GetTimeoutError)"]


def test_a_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(rb.MissingExtraError, match=r"pip install 'personkit\[cluster\]'"):
        rb.import_ray()


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.add(c)
            todo.append(c)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")
def test_ctrl_c_cancels_every_task_and_stops_the_local_ray(tmp_path, tiny_world_dir):
    """The command's own local Ray (no --address) on 2 CPUs: two of three long jobs train (the
    third waits for a CPU); Ctrl-C cancels every task, stops Ray with every worker, exits 130;
    the jobs stay unrecorded."""
    long = ["train.iterations=5000", "train.checkpoint_every=0"]
    rows = [{"name": "a", "config": REID, "overrides": long},
            {"name": "b", "config": REID, "overrides": [*long, "train.lr=0.003"]},
            {"name": "c", "config": REID, "overrides": [*long, "train.lr=0.004"]}]
    spec, out = _spec(tmp_path, tiny_world_dir, rows), tmp_path / "study"
    proc = subprocess.Popen([sys.executable, "-m", "personkit", "study", str(spec), "--out",
                             str(out), "--no-progress", "--backend", "ray"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        started = []
        for line in proc.stdout:
            started += [line] if "train ... (node" in line else []
            if len(started) == 2:
                break
        time.sleep(10)  # time for a third job to start, were it given a CPU it has not
        below = _descendants(proc.pid)
        assert len(below) > 3  # Ray's processes: GCS, raylet, workers
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "train ... (node" not in rest  # the third job never started
    assert rest.count("stopped (rerun to resume)") == 2 and "interrupted" in rest
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{p}").exists() for p in below) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [p for p in below if Path(f"/proc/{p}").exists()]
    assert not alive, f"left running: {alive}"
    assert read_results(out / "results.jsonl") == []
