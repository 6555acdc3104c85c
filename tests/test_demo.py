"""`personkit demo`: its world cache (reused only for the same world) and, in the slow tier,
its targets on the ``small`` world."""

import json

import pytest

import personkit.synth.world
from personkit.demo import TARGETS, run_demo
from personkit.synth import ensure_world


def test_world_cache_is_reused_only_for_the_same_world(tmp_path, monkeypatch):
    first = ensure_world(tmp_path, "tiny", 0)
    assert first["cached"] is False and first["counts"]["lip_train_images"] == 40
    again = ensure_world(tmp_path, "tiny", 0)
    assert again["cached"] is True and again["counts"] == first["counts"]

    class Rebuilt(Exception):
        """ensure_world decided to synthesise (the world itself is not rendered again)."""

    def rebuild(root, preset, seed, **options):
        raise Rebuilt(preset, seed)

    monkeypatch.setattr(personkit.synth.world, "synthesize", rebuild)
    marker = tmp_path / "personkit_synth.json"
    original = marker.read_text()

    def older_preset(info):  # a world rendered by an older preset definition
        info["params"]["market_train_ids"] += 1

    def older_generator(info):
        info["version"] -= 1

    for change in (older_preset, older_generator):
        info = json.loads(original)
        change(info)
        marker.write_text(json.dumps(info))
        with pytest.raises(Rebuilt):
            ensure_world(tmp_path, "tiny", 0)
    marker.write_text(original)
    with pytest.raises(Rebuilt, match="1"):
        ensure_world(tmp_path, "tiny", 1)  # another seed
    assert ensure_world(tmp_path, "tiny", 0)["cached"] is True


@pytest.mark.slow
def test_demo_meets_its_targets_on_the_small_world(tmp_path):
    """The README's demo claim: every headline metric reaches its target (about 7 min)."""
    result = run_demo(tmp_path / "demo", preset="small", progress=False)
    for name, target in TARGETS.items():
        assert result["headline"][name] >= target, (name, result["headline"][name])
