"""One writer per study folder and per run directory; ``--jobs`` children die with their
parent (issue #22, item 5)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from personkit.cli import main
from personkit.runtime import LockedError, exclusive
from personkit.study import run_study

REPO = Path(__file__).resolve().parents[2]
REID = str(REPO / "configs" / "study" / "synthetic" / "reid.yaml")
HOLD = ("import sys, time; from personkit.runtime import exclusive\n"
        "with exclusive(sys.argv[1], 'test', per_process=sys.argv[2] == '1'):\n"
        "    print('held', flush=True); time.sleep(120)\n")
#: Hold the lock, fork a child that outlives the block, let go and say so.
FORK = ("import os, sys, time; from personkit.runtime import exclusive\n"
        "with exclusive(sys.argv[1], 'test', per_process=sys.argv[2] == '1'):\n"
        "    child = os.fork()\n"
        "    if child == 0:\n"
        "        time.sleep(30); os._exit(0)\n"
        "print(child, flush=True); time.sleep(30)\n")


def _spec(tmp_path: Path, world: Path, iterations: int) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({
        "name": "w", "world": {"preset": "tiny", "seed": 0, "dir": str(world)},
        "defaults": {"seeds": [0], "overrides": [
            f"train.iterations={iterations}", "train.checkpoint_every=0",
            "data.train.0.pk_p=4", "train.device=cpu"]},
        "rows": [{"name": "reid", "config": REID}]}))
    return path


def _holder(lock: Path, per_process: bool = False) -> subprocess.Popen:
    """Another process holding ``lock`` (as a second personkit would)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), str(int(per_process))],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_study_folder_or_run_directory_is_refused(tmp_path, tiny_world_dir, capsys):
    out = tmp_path / "study"
    holder = _holder(out / ".study.lock", per_process=True)  # as run_study holds it
    try:
        with pytest.raises(LockedError, match=rf"study folder {out} is in use by another "
                                              rf"personkit process \(PID {holder.pid}"):
            run_study(_spec(tmp_path, tiny_world_dir, 2), out, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "results.jsonl").exists()  # refused before any job ran

    run = tmp_path / "run"
    holder = _holder(run / ".lock")
    try:
        assert main(["train", str(REPO / "configs" / "tiny.yaml"), "--out", str(run),
                     "--no-progress"]) == 2
    finally:
        holder.kill()
        holder.wait()
    assert f"in use by another personkit process (PID {holder.pid}" in capsys.readouterr().err
    assert not (run / "checkpoints").exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys):
    lock = tmp_path / ".lock"
    holder = _holder(lock)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with exclusive(lock, "the folder"):
        pass
    assert f"the folder: took over the lock of PID {holder.pid}" in capsys.readouterr().err
    with exclusive(lock, "the folder"):  # a clean exit leaves nothing to report
        pass
    assert "took over" not in capsys.readouterr().err


def _job_children(out: Path) -> list[int]:
    """PIDs of ``personkit study ... --job`` processes working on ``out``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"--job" in cmd and str(out).encode() in cmd:
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow  # ~8 s: a real study process killed mid-job; make test's time
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_jobs_children_die_with_a_killed_parent(tmp_path, tiny_world_dir):
    out = tmp_path / "study"
    parent = subprocess.Popen(
        [sys.executable, "-m", "personkit", "study", str(_spec(tmp_path, tiny_world_dir, 5000)),
         "--out", str(out), "--jobs", "2", "--no-progress"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    children: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not children and time.monotonic() < deadline:
            assert parent.poll() is None, "the study ended before its job started"
            time.sleep(0.2)
            children = _job_children(out)
        assert children, "no --job child started"
        time.sleep(1.0)  # past the child's start-up, into its imports or training
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while _job_children(out) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _job_children(out) == []  # no orphan goes on training
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in _job_children(out):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("per_process", [True, False])
def test_a_forked_child_keeps_an_flock_but_not_a_per_process_lock(tmp_path, per_process):
    """A study's lock (``per_process``) is free once the study's process lets go, whatever it
    forked meanwhile (a lingering child made a rerun right after a Ray study fail); an
    ``flock`` stays held by the child."""
    lock = tmp_path / ".lock"
    proc = subprocess.Popen([sys.executable, "-c", FORK, str(lock), str(int(per_process))],
                            stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    try:
        if per_process:
            with exclusive(lock, "the folder", per_process=True):
                pass
        else:
            with pytest.raises(LockedError, match="PID unknown"):
                with exclusive(lock, "the folder"):
                    pass
    finally:
        os.kill(child, signal.SIGKILL)
        proc.kill()
        proc.wait()
