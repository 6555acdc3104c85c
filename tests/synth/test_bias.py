"""Dataset bias: bias 0 is today's world (no bias code runs, the same key and files), bias 1
writes other pictures whose domain gap is clearly larger, every knob is in the manifest, and
bad values are refused by name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from personkit.cli import main
from personkit.synth import Preset, synthesize, world_key
from personkit.synth import items as items_mod
from personkit.synth.bias import looks_at
from personkit.synth.gap import domain_gap, image_statistics
from personkit.synth.world import MARKER

# enough MPII- and LIP-like images for a 5-fold classifier, few Market ids: about 2 s a world
MICRO = Preset(market_train_ids=16, market_test_ids=4, market_images_per_id=4,
               market_query_prob=0.5, market_junk_frac=0.0, market_distractor_frac=0.0,
               mpii_images=70, mpii_val_frac=0.0, mpii_test_frac=0.0, lip_train=60, lip_val=2,
               workers=1)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MARKER}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[float, Path]:
    base = tmp_path_factory.mktemp("bias")
    return {b: synthesize(base / f"b{b}", MICRO, seed=0, bias=b).out_dir for b in (0.0, 1.0)}


def test_bias_zero_is_todays_world(worlds, tmp_path, monkeypatch):
    """No bias code runs at bias 0 (so the files are those of the world before the knob: the
    render functions draw exactly what they drew), and the world's key is unchanged."""
    def boom(*args, **kwargs):
        raise AssertionError("bias code ran at bias 0")

    for name in ("looks_at", "draw_effects", "bias_rng"):
        monkeypatch.setattr(items_mod, name, boom)
    again = synthesize(tmp_path / "again", MICRO, seed=0)  # the bias argument left out
    assert _hashes(again.out_dir) == _hashes(worlds[0.0])
    marker = json.loads((worlds[0.0] / MARKER).read_text())
    assert "bias" not in marker and marker["params"] == world_key(MICRO)["params"]
    assert world_key(MICRO, 0.0) == world_key(MICRO)


def test_bias_one_changes_every_picture_not_the_labels(worlds):
    zero, one = _hashes(worlds[0.0]), _hashes(worlds[1.0])
    assert zero.keys() == one.keys()
    jpgs = [k for k in zero if k.endswith(".jpg")]
    assert len(jpgs) > 200 and all(zero[k] != one[k] for k in jpgs)
    # Market identities, names and attributes do not depend on the look
    assert zero["Market-1501-v15.09.15/market_attribute.mat"] == one[
        "Market-1501-v15.09.15/market_attribute.mat"]
    marker = json.loads((worlds[1.0] / MARKER).read_text())
    assert marker["bias"] == 1.0
    looks = marker["looks"]
    assert set(looks) == {"market", "mpii", "lip"} and len(looks["market"]["domains"]) == 6
    assert looks["lip"]["look"]["lowres"] == [0.35, 0.7] and looks["mpii"]["look"]["motion_blur"]


def test_domain_gap_grows_with_bias(worlds):
    """The gap figures (no personkit model involved) are clearly above bias 0's at bias 1."""
    g0, g1 = domain_gap(worlds[0.0], n=60), domain_gap(worlds[1.0], n=60)
    assert g0.images == g1.images == {"market": 60, "mpii": 60, "lip": 60}
    assert 1 / 3 < g0.accuracy < g1.accuracy and g1.accuracy >= g0.accuracy + 0.1
    assert g1.frechet >= 2 * g0.frechet > 0
    assert "dataset-classifier accuracy" in str(g1)


def test_looks_interpolate_between_today_and_full_bias():
    zero, half, one = looks_at(0.0), looks_at(0.5), looks_at(1.0)
    assert zero["lip"].look.lowres == (1.0, 1.0) and one["lip"].look.lowres == (0.35, 0.7)
    assert half["lip"].look.lowres == pytest.approx((0.675, 0.85))
    q0, q1 = zero["lip"].domain.jpeg, one["lip"].domain.jpeg
    assert q1[0] < half["lip"].domain.jpeg[0] < q0[0]  # JPEG quality falls with bias
    assert zero["mpii"].look.views == (0.45, 0.25, 0.3) and zero["lip"].look.half_body == 0.15
    assert one["lip"].look.half_body == 0.4 and one["market"].look.views is None
    assert image_statistics(np.zeros((40, 20, 3), np.uint8)).shape == (19,)


@pytest.mark.parametrize("bias", [-0.1, 1.5, "much"])
def test_bad_bias_is_refused_by_name(tmp_path, bias):
    with pytest.raises(ValueError, match="synth bias"):
        synthesize(tmp_path / "w", MICRO, bias=bias)
    assert not (tmp_path / "w" / "mpii").exists()


def test_cli_synth_bias_and_gap(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "w"), "--preset", "tiny", "--bias", "0.5",
                 "--gap", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "dataset-classifier accuracy" in out and "Fréchet distance" in out
    assert json.loads((tmp_path / "w" / MARKER).read_text())["bias"] == 0.5
    code = main(["synth", "--out", str(tmp_path / "x"), "--bias", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "synth bias must be in [0, 1], got 2.0" in err and len(
        err.splitlines()) == 1


@pytest.mark.slow  # ~8 s: renders the tiny world twice; make test's time
def test_ensure_world_rebuilds_when_the_bias_differs(tmp_path):
    """A study's world cache never serves a world of another bias."""
    from personkit.synth import ensure_world

    root = tmp_path / "w"
    assert ensure_world(root, "tiny", 0, bias=0.5)["cached"] is False
    assert ensure_world(root, "tiny", 0, bias=0.5)["cached"] is True
    assert ensure_world(root, "tiny", 0)["cached"] is False  # bias 0 asked, 0.5 there
    assert "bias" not in json.loads((root / MARKER).read_text())
    assert ensure_world(root, "tiny", 0, bias=0.0)["cached"] is True
