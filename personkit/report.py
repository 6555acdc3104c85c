"""Presenting evaluation results: Markdown tables shaped like the tables of Pfeiffer et al.
(GCPR 2019), JSON-ready values (:func:`to_jsonable`) and learning-curve plots of a run's log.

Scores are stored as fractions in [0, 1] and shown as percentages, as in the paper.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from personkit.data.constants import MARKET_ATTRIBUTE_DISPLAY

PCKH_COLUMNS = ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean")


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}"


def score(results: Mapping[str, Mapping[str, Any]], dataset: str, protocol: str,
          field: str) -> Any:
    """``results[dataset][protocol][field]``, or None where any level is missing."""
    return results.get(dataset, {}).get(protocol, {}).get(field)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def reid_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Table 1: mAP (non-interpolated and official) and CMC ranks per dataset."""
    rows = [[name, _pct(r["reid"]["mAP"]), _pct(r["reid"].get("mAP_official")),
             _pct(r["reid"].get("mINP")), _pct(r["reid"]["rank1"]), _pct(r["reid"].get("rank5")),
             _pct(r["reid"].get("rank10"))] for name, r in results.items() if "reid" in r]
    return markdown_table(["Dataset", "mAP", "mAP (official)", "mINP", "rank-1", "rank-5",
                           "rank-10"], rows)


def attribute_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Table 2: per attribute, the official accuracy (the paper's), the balanced accuracy
    (mean recall over the classes present) and the positive class's F1 (binary attributes),
    with their means, and the balanced accuracy of the calibrated decisions (binary
    attributes; the others as the arg-max); then the label-based mA over the binary
    attributes (:mod:`personkit.metrics.attributes`)."""
    out = []
    for name, r in results.items():
        if "attributes" not in r:
            continue
        scores = r["attributes"]
        attrs = [k.split("/", 1)[1] for k in scores if k.startswith("acc/")]
        header = [name] + [MARKET_ATTRIBUTE_DISPLAY.get(a, a) for a in attrs] + ["Avg"]
        rows = [[label] + [_pct(scores.get(f"{key}/{a}")) for a in attrs] + [_pct(
            scores.get(mean))] for label, key, mean in (
            ("accuracy", "acc", "mean"), ("balanced accuracy", "bacc", "bacc_mean"),
            ("F1 (positive)", "F1", "mF1")) if any(f"{key}/{a}" in scores for a in attrs)]
        tuned = scores.get("calibrated") or {}
        if tuned:
            rows.append(["balanced accuracy, calibrated"] + [
                _pct(tuned.get(f"bacc/{a}", scores.get(f"bacc/{a}"))) for a in attrs] + [
                _pct(tuned.get("mA"))])
        mean_acc = scores.get("mA")
        out.append(markdown_table(header, rows) + (
            "" if mean_acc is None else f"\n\nlabel-based mA (binary attributes): "
                                        f"{_pct(mean_acc)}" + (
                f"; with calibrated thresholds ({tuned.get('rule')}): {_pct(tuned['mA'])}"
                if tuned else "")))
    return "\n\n".join(out)


def pose_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Table 3: PCKh@0.5 per joint group, plus Mean@0.1."""
    rows = [[name] + [_pct(r["pose"].get(c)) for c in PCKH_COLUMNS]
            + [_pct(r["pose"].get("Mean@0.1"))] for name, r in results.items() if "pose" in r]
    return markdown_table(["Dataset", *PCKH_COLUMNS, "Mean@0.1"], rows)


def parts_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Table 4: overall accuracy, mean accuracy, mIoU, and the merged mIoU5."""
    rows = [[name, _pct(r["parts"]["pixel_acc"]), _pct(r["parts"]["mean_acc"]),
             _pct(r["parts"]["mIoU"]), _pct(r["parts"].get("mIoU5"))]
            for name, r in results.items() if "parts" in r]
    return markdown_table(["Dataset", "Overall accuracy", "Mean accuracy", "Mean IoU", "mIoU5"],
                          rows)


def match_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """The calibrated same-person threshold (``track --gallery``'s default) per ReID set."""
    rows = [[name, f"{r['match']['threshold']:.4f}", _pct(r["match"]["precision"]),
             _pct(r["match"]["recall"]), _pct(r["match"]["stranger_accept"]),
             r["match"]["num_queries"]] for name, r in results.items() if "match" in r]
    return markdown_table(["Dataset", "Threshold (cosine)", "Precision", "Recall",
                           "Strangers accepted", "Queries"], rows)


def all_tables(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Every table that has data, with titles."""
    sections = [("Person re-identification", "reid", reid_table),
                ("Attributes", "attributes", attribute_table),
                ("Pose (PCKh@0.5)", "pose", pose_table),
                ("Body-part segmentation", "parts", parts_table),
                ("Same-person threshold (gallery matching)", "match", match_table)]
    out = []
    for title, protocol, fn in sections:
        if any(protocol in r for r in results.values()):
            out.append(f"### {title}\n\n{fn(results)}")
    return "\n\n".join(out)


def to_jsonable(obj: Any) -> Any:
    """Nested results with numpy arrays and scalars turned into lists and Python numbers."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def summary_table(results: Mapping[str, Mapping[str, Any]], reid: str = "market",
                  pose_sets: Sequence[str] = ("mpii", "lip"), parts: str = "lip") -> str:
    """Table 6: one row with ReID mAP and rank-1, attribute accuracy, PCKh on every pose set,
    and part mIoU (20 classes) and mIoU5."""
    def get(name: str, protocol: str, field: str) -> Any:
        return score(results, name, protocol, field)

    header = ["ReID mAP", "rank-1", "Attr. acc"] + [f"{p} PCKh" for p in pose_sets] + [
        "mIoU", "mIoU5"]
    row = [_pct(get(reid, "reid", "mAP")), _pct(get(reid, "reid", "rank1")),
           _pct(get(reid, "attributes", "mean"))]
    row += [_pct(get(p, "pose", "Mean")) for p in pose_sets]
    row += [_pct(get(parts, "parts", "mIoU")), _pct(get(parts, "parts", "mIoU5"))]
    return markdown_table(header, [row])


def plot_learning_curves(log_path: str | Path, out_path: str | Path, window: int = 20) -> Path:
    """Plot every ``loss_*`` series of a run's ``log.jsonl`` (moving average) and the LR."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series: dict[str, tuple[list[int], list[float]]] = {}
    for line in Path(log_path).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for key, value in record.items():
            if key.startswith("loss_") or key == "lr":
                series.setdefault(key, ([], []))
                series[key][0].append(record["step"])
                series[key][1].append(value)
    losses = sorted(k for k in series if k != "lr")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key in losses:
        steps, values = series[key]
        w = max(1, min(window, len(values) // 5))
        smooth = np.convolve(values, np.ones(w) / w, mode="valid")
        axes[0].plot(steps[w - 1:], smooth, label=key.removeprefix("loss_"))
    axes[0].set(xlabel="step", ylabel="loss (moving average)", yscale="log", title="Task losses")
    axes[0].legend()
    if "lr" in series:
        axes[1].plot(*series["lr"])
    axes[1].set(xlabel="step", ylabel="learning rate", title="Learning rate")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)
