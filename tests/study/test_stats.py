"""The study's statistics: paired bootstrap intervals over seeds and test items, the fixed
verdict rule (sign rule and interval must agree), the dose-response figure, and per-row
worlds (dataset bias) in a spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from personkit.study import StudyError, load_study
from personkit.study.report import interval, verdict, write_outputs
from personkit.study.stats import paired_bootstrap

REPO = Path(__file__).resolve().parents[2]
BIAS_SPEC = REPO / "configs" / "study" / "bias.yaml"


def test_bootstrap_of_constant_differences_is_that_constant():
    ci = paired_bootstrap(np.full((3, 50), 0.02))
    assert ci.mean == pytest.approx(0.02) and ci.low == pytest.approx(0.02)
    assert ci.high == pytest.approx(0.02) and ci.side() == 1 and ci.items == 50


def test_bootstrap_over_items_matches_the_normal_interval():
    """One seed, many items: the percentile interval is close to mean ± 1.96 s / sqrt(n)."""
    rng = np.random.default_rng(0)
    d = rng.normal(0.01, 0.1, size=(1, 4000))
    ci = paired_bootstrap(d)
    half = 1.96 * d.std(ddof=1) / np.sqrt(d.size)
    assert ci.low == pytest.approx(d.mean() - half, abs=0.15 * half)
    assert ci.high == pytest.approx(d.mean() + half, abs=0.15 * half)
    assert paired_bootstrap(d) == ci  # seeded: the same numbers give the same interval


def test_bootstrap_over_seeds_spans_their_differences():
    ci = paired_bootstrap(np.array([0.01, 0.03, 0.05]))
    assert ci.low == pytest.approx(0.01) and ci.high == pytest.approx(0.05) and ci.items == 0
    with pytest.raises(ValueError, match="S or S×Q"):
        paired_bootstrap(np.zeros((2, 2, 2)))


def _record(row: str, seed: int, ap: np.ndarray) -> dict:
    reid = {"mAP": float(ap.mean()), "rank1": float((ap > 0.5).mean()),
            "per_query": {"AP": ap.tolist(), "rank1": (ap > 0.5).astype(float).tolist()}}
    return {"row": row, "seed": seed, "config_hash": "", "metrics": {"market": {"reid": reid}}}


def _records(shift: float, noise: float, n: int = 200) -> list[dict]:
    rng = np.random.default_rng(1)
    out = []
    for seed in range(3):
        base = rng.uniform(0.3, 0.9, n)
        out += [_record("gn", seed, base),
                _record("bn", seed, np.clip(base + shift + rng.normal(0, noise, n), 0, 1))]
    return out


CLAIM = {"claim": "BN is worse", "row": "bn", "baseline": "gn", "metric": "market.reid.mAP",
         "expect": "lower"}


def test_verdict_needs_both_rules():
    clear = _records(-0.05, 0.01)
    v, numbers = verdict(clear, CLAIM)
    assert v == "holds" and "sign rule: holds, interval rule: holds" in numbers
    assert "seeds × 200 items" in numbers
    assert verdict(_records(+0.05, 0.01), CLAIM)[0] == "does not hold"
    # every seed agrees and the mean exceeds the spread, but the test set is too noisy for
    # the interval: the sign rule alone would call it; the study does not
    item = np.random.default_rng(2).normal(0, 0.3, 40)
    item -= item.mean()  # items that differ a lot, the same way in every seed
    noisy = []
    for seed, shift in enumerate((-0.020, -0.021, -0.019)):
        noisy += [_record("gn", seed, np.full(40, 0.5)), _record("bn", seed, 0.5 + shift + item)]
    assert verdict(noisy, CLAIM)[1].count("sign rule: holds")
    ci = interval(noisy, "bn", "gn", "market.reid.mAP")
    assert ci.low < 0 < ci.high
    v, numbers = verdict(noisy, CLAIM)
    assert v == "inconclusive" and "interval rule: inconclusive" in numbers


def _bias_spec(tmp_path: Path, **changes) -> Path:
    spec = yaml.safe_load(BIAS_SPEC.read_text())
    for row in spec["rows"]:
        if "config" in row:
            row["config"] = str(BIAS_SPEC.parent / row["config"])
    spec.update(changes)
    path = tmp_path / "bias.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_bias_spec_runs_each_bias_on_its_own_world(tmp_path):
    study = load_study(BIAS_SPEC, tmp_path / "out")
    assert len(study.jobs) == 48 and {j.seed for j in study.jobs} == {0, 1, 2}
    worlds = study.worlds()
    assert [w.get("bias", 0.0) for w in worlds.values()] == [0.0, 0.5, 1.0]
    assert [p.name for p in worlds] == ["data", "data-bias0.5", "data-bias1"]
    by = {(j.row, j.seed): j for j in study.jobs}
    gn0, gn1 = by[("multi_gn[bias=0]", 0)], by[("multi_gn[bias=1]", 0)]
    assert gn0.config.data.root == str(tmp_path / "out" / "data")
    assert gn1.config.data.root == str(tmp_path / "out" / "data-bias1")
    assert gn1.world_id["bias"] == 1.0 and "bias" not in gn0.world_id
    assert by[("finetune", 0)].data_root.name == "data-bias1"
    assert len({j.config_hash for j in study.jobs}) == 48
    assert study.dose[0]["x"] == "bias"


def test_bad_row_worlds_are_refused_naming_the_row(tmp_path):
    spec = yaml.safe_load(BIAS_SPEC.read_text())
    spec["rows"][0]["world"] = {"bias": 2}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(StudyError, match=r"row reid_gn\[bias=0\]: world: bias must be in"):
        load_study(path, tmp_path / "o")
    spec["rows"][0]["world"] = {"colour": 1}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(StudyError, match=r"unknown key\(s\) \['colour'\]"):
        load_study(path, tmp_path / "o")
    del spec["world"]
    spec["rows"][0]["world"] = {"bias": 1}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(StudyError, match="needs the spec's synthetic 'world:'"):
        load_study(path, tmp_path / "o")


def test_dose_figure_and_table_from_records(tmp_path):
    study = load_study(_bias_spec(tmp_path), tmp_path / "out")
    rng = np.random.default_rng(0)
    records = []
    for job in study.jobs:
        if job.row.startswith(("multi_gn", "multi_bn")):
            shift = -0.04 * job.grid["bias"] if job.row.startswith("multi_bn") else 0.0
            ap = np.clip(rng.uniform(0.4, 0.9, 100) + shift, 0, 1)
            records.append({**_record(job.row, job.seed, ap), "config_hash": job.config_hash})
    report = tmp_path / "doc.md"
    study.out.mkdir()
    out = write_outputs(study, records, report)
    assert out["dose"][0].stat().st_size > 1000
    text = (study.out / "study.md").read_text()
    assert "Dose response: BN − GN ReID mAP against dataset bias" in text
    assert "| multi-dataset: BN − GN | 1 | 3 |" in text and "![" in text
    doc = report.read_text()
    assert "begin results of bias" in doc and (tmp_path / "doc_bias_dose0.png").is_file()
