"""Attribute search on video (issue 34): how well ``--where ATTR=yes`` finds the people of
synthetic ``crossing`` cameras who carry a backpack, handbag, shoulder bag or hat, and how well
the model separates them at all.

1. The cameras (``--seeds``, default 0-2: the done-when test's) are tracked from their
   ``det.txt`` and indexed together with ``RUN`` (``--engine torch``); for each attribute:
   hits, precision over the hits that are a known person, recall over the people (found when
   any of their entries is a hit): the test's two numbers.
2. On every ground-truth box (at least 30 % visible, clipped to the frame), the model's
   probability of "yes": the ROC AUC per frame and per person-and-camera mean, which bounds
   what any threshold can do.

Usage::

    python benchmarks/bench_attribute_search.py RUN [--seeds 0,1,2]
        [--out benchmarks/results/attribute_search.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from personkit.cli import main as personkit
from personkit.index import PeopleIndex
from personkit.index.search import search
from personkit.inference import Predictor
from personkit.runtime import describe_machine, machine_info
from personkit.synth.mot import sequence_person, synthetic_person, write_mot_sequence
from personkit.track.calibrate import gt_tracks

ATTRIBUTES = ("backpack", "handbag", "bag", "hat")


def auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC (scikit-learn's); None without both classes."""
    from sklearn.metrics import roc_auc_score

    positive = np.asarray(positive, bool)
    return None if positive.all() or not positive.any() else float(
        roc_auc_score(positive, scores))


def search_scores(index_dir: Path) -> dict[str, dict[str, float | int]]:
    """Per attribute: carriers, hits, precision and recall of ``ATTR=yes`` (module doc)."""
    people = PeopleIndex.open(index_dir)
    meta, _ = people.store.vectors()
    known = {m["identity"] for m in meta if m["identity"]}
    labels = {i: _labels(i) for i in known}
    out = {}
    for attr in ATTRIBUTES:
        carriers = {i for i in known if labels[i][attr] == "yes"}
        hits = search(people, where=f"{attr}=yes", k=1000)["hits"]
        named = [h["identity"] for h in hits if h["identity"]]
        out[attr] = {"people": len(known), "carriers": len(carriers), "hits": len(hits),
                     "precision": (float(np.mean([labels[i][attr] == "yes" for i in named]))
                                   if named else None),
                     "recall": (len(set(named) & carriers) / len(carriers)
                                if carriers else None)}
    return out


def _labels(identity: str) -> dict[str, str]:
    """The synthetic person ``synth:SEED:ID``'s attribute labels."""
    _, seed, pid = identity.split(":")
    return synthetic_person(int(seed), int(pid))[1]


def separation(predictor: Predictor, cams: list[Path]) -> dict[str, dict[str, float | None]]:
    """Per attribute: the AUC of the per-frame and the per-track-mean probability (module
    doc, 2), from one pass over the ground-truth boxes (:func:`gt_tracks`)."""
    names = [n for n, c in predictor.meta.attributes.items() if len(c) == 2]
    tracks = [t for seq in cams for t in gt_tracks(predictor, seq)]
    carries = [sequence_person(t.sequence, t.gt_id)[1] for t in tracks]
    out = {}
    for a in ATTRIBUTES:
        b = names.index(a)
        yes = np.array([known[a] == "yes" for known in carries])
        per_frame = np.concatenate([t.frame_attributes[:, b] for t in tracks])
        frame_yes = np.repeat(yes, [t.frames for t in tracks])
        out[a] = {"frame_auc": auc(per_frame, frame_yes),
                  "track_auc": auc(np.array([t.attributes[b] for t in tracks]), yes),
                  "frames": len(per_frame), "tracks": len(tracks)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="the four-task model (run directory)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="benchmarks/results/attribute_search.json")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        cams = [write_mot_sequence(Path(tmp) / f"crossing-{s}", "crossing", seed=s)
                for s in seeds]
        index = Path(tmp) / "people"
        if personkit(["index", str(index), *map(str, cams), "--model", args.run,
                      "--engine", "torch", "--no-progress"]) != 0:
            sys.exit("indexing failed")
        found = search_scores(index)
        predictor = Predictor.from_checkpoint(args.run, device="cpu")
        separated = separation(predictor, cams)
    thresholds = predictor.track_attribute_thresholds
    result = {"machine": machine_info(), "run": args.run, "seeds": seeds,
              "thresholds": {a: thresholds.get(a, 0.5) for a in ATTRIBUTES},
              "search": found, "separation": separated}
    print(describe_machine(result["machine"]))
    for a in ATTRIBUTES:
        f, s = found[a], separated[a]
        print(f"{a:<9} threshold {result['thresholds'][a]:.3f}: {f['hits']} hits, precision "
              f"{_num(f['precision'])}, recall {_num(f['recall'])} ({f['carriers']} of "
              f"{f['people']} people carry one); AUC per frame {_num(s['frame_auc'])}, per "
              f"track {_num(s['track_auc'])}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    main()
