"""Every ``configs/paper`` recipe loads (through its ``base:`` chain) and builds its model and
training data pipeline against native-format data (the tiny synthetic world), with no
training. Backbones are swapped for ResNet-18 without pretrained weights to stay fast; the
GroupNorm/BatchNorm choice and sharing variant of each recipe are kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from personkit.config import ConfigError, load_config, read_raw_config
from personkit.data.datasets.market_auto import AutoAnnotation, write_market_auto
from personkit.engine.datasets import build_sources, read_records
from personkit.models.build import build_model

PAPER = Path(__file__).resolve().parent.parent / "configs" / "paper"
RECIPES = sorted(p.name for p in PAPER.glob("*.yaml") if p.name != "base.yaml")


@pytest.fixture(scope="module")
def auto_annotations(tiny_world_dir, tmp_path_factory):
    """Plausible market_auto annotations for every tiny Market training crop (not in the world)."""
    out = tmp_path_factory.mktemp("auto")
    crops = sorted((tiny_world_dir / "Market-1501-v15.09.15" / "bounding_box_train").glob("*.jpg"))
    rng = np.random.default_rng(0)
    write_market_auto(out, (AutoAnnotation(
        f"bounding_box_train/{p.name}", rng.uniform(0, 60, (16, 2)), np.full(16, 0.9),
        np.full((128, 64), 5, np.uint8)) for p in crops))
    return out


def test_every_table_row_has_a_recipe_and_a_readme_line():
    readme = (PAPER / "README.md").read_text(encoding="utf-8")
    assert len(RECIPES) >= 40
    missing = [r for r in RECIPES if f"`{r}`" not in readme]
    assert not missing, f"configs/paper/README.md does not list {missing}"
    tables = {read_raw_config(PAPER / r) and r.split("_")[0] for r in RECIPES}
    assert {"t1", "t2", "t3", "t4", "t5", "t6", "t7", "fig5"} <= tables


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_builds_model_and_data(recipe, tiny_world_dir, auto_annotations, tmp_path):
    cfg = load_config(PAPER / recipe)
    assert cfg.model.backbone.name == "resnet50" and cfg.train.optimizer == "adam"
    assert all(d.pk_p == 18 and d.pk_k == 4 and d.input_size == (256, 128)
               for d in cfg.data.train if d.sampler == "pk")
    assert all(d.input_size == (256, 256) for d in cfg.data.train if d.type in ("mpii", "lip"))
    raw = read_raw_config(PAPER / recipe)
    raw["model"]["backbone"].update(name="resnet18", pretrained=None)
    raw["model"]["init_from"] = None
    raw["data"].update(root=str(tiny_world_dir), num_workers=0)
    for d in raw["data"]["train"]:
        if d["type"] == "market_auto":
            d["options"] = {"annotations": str(auto_annotations)}
    path = tmp_path / recipe
    path.write_text(yaml.safe_dump(raw))
    small = load_config(path)
    model = build_model(small.model)
    assert model.sharing == cfg.model.sharing and set(model.enabled) == set(cfg.model.heads)
    sources = build_sources(small)
    assert set(sources) == {d.name for d in cfg.data.train}
    for d in small.data.eval:
        splits = ("query", "gallery") if d.type == "market1501" else (None,)
        assert all(read_records(d, s, small.data.root) for s in splits)


def test_base_chain_merges_and_detects_cycles(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\ntrain: {lr: 0.5}\n")
    (tmp_path / "b.yaml").write_text("base: [c.yaml]\ntrain: {lr: 0.1, iterations: 7}\n"
                                     "model: {heads: [reid]}\n")
    (tmp_path / "c.yaml").write_text("model: {heads: [pose, reid], num_ids: 3}\n")
    cfg = load_config(tmp_path / "a.yaml")
    assert (cfg.train.lr, cfg.train.iterations) == (0.5, 7)
    assert cfg.model.heads == ("reid",) and cfg.model.num_ids == 3  # lists replace, dicts merge
    (tmp_path / "c.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml \(base of"):
        load_config(tmp_path / "a.yaml")
