"""Same seed -> byte-identical files (whatever the number of workers); other seed -> others."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from personkit.synth import Preset, synthesize
from personkit.synth.world import MARKER


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(tiny_world, tmp_path):
    again = synthesize(tmp_path / "again", "tiny", seed=0, workers=2)
    first, second = _hashes(tiny_world.out_dir), _hashes(again.out_dir)
    assert len(first) > 300
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_other_seed_gives_other_files(tiny_world, tmp_path):
    other = _hashes(synthesize(tmp_path / "other", "tiny", seed=1).out_dir)
    first = _hashes(tiny_world.out_dir)
    common = [k for k in first if k in other and k != MARKER]
    same = [k for k in common if first[k] == other[k]]
    assert len(same) <= 0.02 * len(first)  # names and contents change
    attrs = "Market-1501-v15.09.15/market_attribute.mat"
    assert first[attrs] != other[attrs]


def test_rerun_replaces_own_world_but_not_foreign_folders(tmp_path):
    out = tmp_path / "w"
    micro = Preset(
        market_train_ids=2, market_test_ids=2, market_images_per_id=3, market_query_prob=0.5,
        market_junk_frac=0.2, market_distractor_frac=0.2, mpii_images=3, mpii_val_frac=0.3,
        mpii_test_frac=0.0, lip_train=2, lip_val=2, workers=1)
    summary = synthesize(out, micro, seed=3)
    assert summary.counts["lip_val_images"] == 2 and summary.preset == "custom"
    stale = out / "LIP" / "stale.txt"
    stale.write_text("x")
    synthesize(out, micro, seed=3)
    assert not stale.exists()
    foreign = tmp_path / "real"
    (foreign / "mpii").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        synthesize(foreign, "tiny")
    with pytest.raises(ValueError, match="unknown synth preset"):
        synthesize(tmp_path / "x", "huge")
