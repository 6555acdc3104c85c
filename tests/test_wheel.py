"""personkit from a built wheel, outside the checkout (issue #12, defect 4).

The wheel is built from a copy of the sources (nothing is written into the checkout) and
installed with ``--no-deps --no-index`` into a fresh venv. The venv finds the dependencies
(torch, ...) through one ``.pth`` line naming this environment's site-packages; Python does not
run the ``.pth`` files inside a directory named that way, so the editable install of personkit
there stays invisible. Commands run with ``PYTHONPATH`` unset from a directory outside the
checkout, so only the installed package can answer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list, cwd: Path, env: dict, timeout: float = 600) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(the venv's bin folder, a working folder outside the checkout, the environment)."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    src = tmp / "src"
    shutil.copytree(ROOT / "personkit", src / "personkit",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", tmp / "dist", src], tmp, env)
    (wheel,) = (tmp / "dist").glob("personkit-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp, env)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    site = Path(_run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()"
                      "['purelib'])"], tmp, env).strip())
    (site / "personkit_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel],
         tmp, env)
    work = tmp / "elsewhere"
    work.mkdir()
    return bin_dir, work, env


def test_wheel_installs_the_package_and_its_built_in_demo_config(wheel_venv):
    bin_dir, work, env = wheel_venv
    out = _run([bin_dir / "python", "-c", "import personkit, personkit.demo as d; "
                "print(personkit.__file__); print(d.DEFAULT_CONFIG); "
                "print(d.load_config(d.DEFAULT_CONFIG).model.backbone.name)"], work, env)
    package, config, backbone = out.split()
    venv = bin_dir.parent.resolve()
    assert Path(package).resolve().is_relative_to(venv), package  # not the checkout
    assert Path(config).resolve().is_relative_to(venv) and Path(config).is_file(), config
    assert backbone == "resnet10t"
    assert not Path(package).resolve().is_relative_to(ROOT)


@pytest.mark.slow
def test_synth_and_a_short_demo_run_from_the_wheel(wheel_venv):
    """``personkit synth --preset tiny`` then the demo for 20 steps (about 1-2 min on 2 cores);
    the demo reuses the synthesised world."""
    bin_dir, work, env = wheel_venv
    _run([bin_dir / "personkit", "synth", "--preset", "tiny", "--out", "demo/data"], work, env)
    assert (work / "demo" / "data" / "personkit_synth.json").is_file()
    out = _run([bin_dir / "personkit", "demo", "--preset", "tiny", "--out", "demo",
                "train.iterations=20", "data.train.0.pk_p=4"], work, env)
    assert "report: demo/report.md" in out and "mIoU5" in out
    for name in ("report.md", "metrics.json", "curves.png", "predictions.png",
                 "run/model.safetensors"):
        assert (work / "demo" / name).is_file(), name
