"""The study's statistics: t intervals over seeds and paired test items, the verdict rule
(the interval decides), the dose-response figure, and per-row worlds (dataset bias) in a
spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from personkit.study import StudyError, load_study
from personkit.study.report import interval, verdict, write_outputs
from personkit.study.stats import paired_interval

REPO = Path(__file__).resolve().parents[2]
BIAS_SPEC = REPO / "configs" / "study" / "bias.yaml"


def test_constant_differences_give_that_constant():
    ci = paired_interval(np.full((3, 50), 0.02))
    assert ci.mean == pytest.approx(0.02) and ci.low == pytest.approx(0.02)
    assert ci.high == pytest.approx(0.02) and ci.side() == 1 and ci.items == 50


def test_seeds_only_is_the_student_t_interval_past_the_extreme_seeds():
    """Three seeds: mean ± t(0.975, 2) s / sqrt(3), wider than the seeds' own range (a
    percentile bootstrap over 3 seeds never is)."""
    d = np.array([0.01, 0.03, 0.05])
    ci = paired_interval(d)
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert (ci.low, ci.high) == pytest.approx((0.03 - half, 0.03 + half))
    assert ci.low < 0.01 and ci.high > 0.05 and ci.kind == "seeds" and ci.df == pytest.approx(2)
    assert paired_interval(np.array([0.02])) is None  # one seed, no items: nothing measured
    with pytest.raises(ValueError, match="S or S×Q"):
        paired_interval(np.zeros((2, 2, 2)))


def test_seeds_and_items_cover_the_mean_at_their_level():
    """Simulated studies (a seed effect, an item effect shared by the seeds, noise): the
    interval holds the true difference at least 95 % of the time, and one seed's interval
    says it covers the test items only."""
    rng = np.random.default_rng(0)
    for seed_sd, item_sd in ((0.02, 0.02), (0.03, 0.01), (0.01, 0.05)):
        hits, n = 0, 2000
        for _ in range(n):
            d = (0.01 + rng.normal(0, seed_sd, (3, 1)) + rng.normal(0, item_sd, (1, 60))
                 + rng.normal(0, 0.02, (3, 60)))
            ci = paired_interval(d)
            hits += ci.low <= 0.01 <= ci.high
        assert hits / n >= 0.95, (seed_sd, item_sd, hits / n)  # about 0.96-1.0: conservative
    assert ci.kind == "seeds+items" and "3 seeds × 60 items, df 2" in ci.text()
    one = paired_interval(rng.normal(0.01, 0.1, (1, 500)))
    assert one.kind == "items" and "training randomness not measured" in one.text()


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


def test_the_interval_decides_the_verdict():
    clear = _records(-0.05, 0.01)
    v, numbers = verdict(clear, CLAIM)
    assert v == "holds" and "3 seeds × 200 items" in numbers and "95 % CI" in numbers
    assert verdict(_records(+0.05, 0.01), CLAIM)[0] == "does not hold"
    # every seed agrees and the mean exceeds the spread, but the test set is too noisy:
    # the interval (seeds and items) contains zero, and the study does not call it
    item = np.random.default_rng(2).normal(0, 0.3, 40)
    item -= item.mean()  # items that differ a lot, the same way in every seed
    noisy = []
    for seed, shift in enumerate((-0.020, -0.021, -0.019)):
        noisy += [_record("gn", seed, np.full(40, 0.5)), _record("bn", seed, 0.5 + shift + item)]
    ci = interval(noisy, "bn", "gn", "market.reid.mAP")
    assert ci.low < 0 < ci.high and ci.kind == "seeds+items"
    assert verdict(noisy, CLAIM)[0] == "inconclusive"


def test_items_pair_by_query_id_not_by_position():
    """Two rows that scored different subsets of the queries (a query without a valid match
    in one of them) pair the queries both scored, by id."""
    base = np.linspace(0.2, 0.8, 30)
    records = []
    for seed in range(2):
        records.append(_record("gn", seed, base))
        row = _record("bn", seed, np.delete(base, 0) - 0.1)  # query 0 dropped
        row["metrics"]["market"]["reid"]["per_query"]["query"] = list(range(1, 30))
        records.append(row)
    ci = interval(records, "bn", "gn", "market.reid.mAP")
    assert ci.items == 29 and ci.mean == pytest.approx(-0.1) and ci.high == pytest.approx(-0.1)


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
