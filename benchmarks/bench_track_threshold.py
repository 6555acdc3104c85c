"""Same person between video track means (issue 34, item 4): how the threshold the crop rule
fits moves with the number of tracks it is fitted on, and what the index's threshold does.

Held-out synthetic cameras (``crossing`` and ``street640`` at each seed: the same people in
two cameras) give ground-truth tracks (:func:`personkit.track.calibrate.gt_tracks`, every
``--every``-th frame). For the first 2, 4, ... of ``--seeds`` (growing sets, each including
the one before):

* the crop rule (:func:`~personkit.track.calibrate.calibrate_track_match`: the largest
  distance at which at most 1 % of the tracks, as queries, find a stranger within it);
* the per-pair rule: the distance below which 0.1 % of the cross-camera stranger pairs fall
  (a false-accept rate that does not depend on how many tracks there are), with the share of
  same-person pairs below it;
* the index's threshold (the model's ``match.tracks``, fitted on Market-like track means):
  its share of stranger pairs accepted, of queries with a stranger within it, and of
  same-person pairs accepted.

Usage::

    python benchmarks/bench_track_threshold.py RUN [--seeds 200-211] [--every 6]
        [--out benchmarks/results/track_threshold.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from personkit.inference import Predictor
from personkit.runtime import describe_machine, machine_info
from personkit.synth.mot import sequence_person, write_mot_sequence
from personkit.track.calibrate import GtTrack, calibrate_track_match, gt_tracks
from personkit.track.merge import l2_normalise

PRESETS = ("crossing", "street640")
PAIR_RATE = 0.001


def pairs(tracks: list[GtTrack]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distances and same-person flags of the cross-camera track pairs, and per track its
    distances and same-person flags to the tracks of other cameras (``inf`` elsewhere)."""
    means = l2_normalise(np.stack([t.embedding for t in tracks]))
    dist = 1.0 - means @ means.T
    who = np.array([sequence_person(t.sequence, t.gt_id)[0] for t in tracks])
    cams = np.array([str(t.sequence) for t in tracks])
    other_cam = cams[:, None] != cams[None, :]
    same = who[:, None] == who[None, :]
    upper = np.triu(other_cam, 1)
    return dist[upper], same[upper], np.where(other_cam, dist, np.inf), same


def at_threshold(threshold: float, paired: tuple[np.ndarray, ...]) -> dict[str, float]:
    """What ``threshold`` accepts on the tracks ``paired`` (:func:`pairs`) describes (module
    docstring)."""
    d, same, per_query, same_q = paired
    nearest_stranger = np.where(~same_q, per_query, np.inf).min(1)
    return {"threshold": threshold, "pair_stranger_accept": float((d[~same] <= threshold).mean()),
            "query_stranger_accept": float((nearest_stranger <= threshold).mean()),
            "pair_recall": float((d[same] <= threshold).mean())}


def fits(tracks: list[GtTrack], paired: tuple[np.ndarray, ...]) -> dict[str, float]:
    """Both rules fitted on ``tracks`` (``paired``: their :func:`pairs`)."""
    crop = calibrate_track_match(tracks, sequence_person)
    d, same, _, _ = paired
    strangers = np.sort(d[~same])
    pair_t = float(strangers[int(PAIR_RATE * len(strangers))])
    return {"tracks": len(tracks), "queries": crop["num_queries"],
            "stranger_pairs": int(len(strangers)), "same_pairs": int(same.sum()),
            "query_rule": crop["threshold"], "query_rule_recall": crop["recall"],
            "pair_rule": pair_t, "pair_rule_recall": float((d[same] <= pair_t).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="the four-task model (run directory)")
    parser.add_argument("--seeds", default="200-211", help="first-last, held-out seeds")
    parser.add_argument("--every", type=int, default=6)
    parser.add_argument("--out", default="benchmarks/results/track_threshold.json")
    args = parser.parse_args()
    first, last = (int(s) for s in args.seeds.split("-"))
    seeds = list(range(first, last + 1))
    predictor = Predictor.from_checkpoint(args.run, device="cpu")
    index_threshold = float(predictor.calibration["tracks"]["threshold"])
    by_seed: dict[int, list[GtTrack]] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:  # the labels are read from the sequences
        for s in seeds:
            by_seed[s] = [t for p in PRESETS for t in gt_tracks(
                predictor, write_mot_sequence(Path(tmp) / f"{p}-{s}", p, seed=s), args.every)]
        for n in range(2, len(seeds) + 1, 2):
            tracks = [t for s in seeds[:n] for t in by_seed[s]]
            paired = pairs(tracks)
            rows.append({"seeds": n, **fits(tracks, paired),
                         "index": at_threshold(index_threshold, paired)})
            print(_line(rows[-1], index_threshold), flush=True)
    result = {"machine": describe_machine(machine_info()), "run": args.run, "seeds": seeds,
              "every": args.every, "presets": PRESETS, "index_threshold": index_threshold,
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


def _line(r: dict, index_threshold: float) -> str:
    return (f"{r['seeds']:>2} seeds, {r['tracks']} tracks ({r['queries']} queries): 1 % of "
            f"queries {r['query_rule']:.5f} (recall {r['query_rule_recall']:.2f}); 0.1 % of "
            f"pairs {r['pair_rule']:.5f} (recall {r['pair_rule_recall']:.2f}); index "
            f"{index_threshold:.5f}: pairs {100 * r['index']['pair_stranger_accept']:.2f} %, "
            f"queries {100 * r['index']['query_stranger_accept']:.1f} % with a stranger, "
            f"recall {r['index']['pair_recall']:.2f}")


if __name__ == "__main__":
    main()
