"""`personkit demo`: its world cache (reused only for the same world) and, in the slow tier,
its targets on the ``small`` world."""

import json

import pytest

from personkit.demo import TARGETS, ensure_world, run_demo


def test_world_cache_is_reused_only_for_the_same_world(tmp_path):
    first = ensure_world(tmp_path, "tiny", 0)
    assert first["cached"] is False and first["counts"]["lip_train_images"] == 40
    again = ensure_world(tmp_path, "tiny", 0)
    assert again["cached"] is True and again["counts"] == first["counts"]
    marker = tmp_path / "personkit_synth.json"
    info = json.loads(marker.read_text())
    info["params"]["market_train_ids"] += 1  # a world rendered by an older preset definition
    marker.write_text(json.dumps(info))
    assert ensure_world(tmp_path, "tiny", 0)["cached"] is False
    info = json.loads(marker.read_text())
    info["version"] -= 1  # ... or by an older generator
    marker.write_text(json.dumps(info))
    assert ensure_world(tmp_path, "tiny", 0)["cached"] is False
    assert ensure_world(tmp_path, "tiny", 1)["cached"] is False  # another seed


@pytest.mark.slow
def test_demo_meets_its_targets_on_the_small_world(tmp_path):
    """The README's demo claim: every headline metric reaches its target (about 7 min)."""
    result = run_demo(tmp_path / "demo", preset="small", progress=False)
    for name, target in TARGETS.items():
        assert result["headline"][name] >= target, (name, result["headline"][name])
