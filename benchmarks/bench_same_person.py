"""The index's "same person" threshold, measured where the index applies it: on track means.

``personkit eval`` calibrates the model's same-person threshold on single crops against single
crops (the largest cosine distance at which at most 1 % of strangers find a match,
:mod:`personkit.metrics.matching`) and, since issue 34, between track means (each identity's
views in one camera averaged); the people index applies the latter (``IndexInfo.
same_person_threshold``; the crop one for a model evaluated before) to the distance between two
entries' track embeddings (the L2-normalised mean of a track's L2-normalised frame embeddings).
This benchmark measures what it does there, on synthetic cameras with ground truth:

* every preset (``--presets``, default ``crossing street640``) at every seed (``--seeds``) is a
  camera (``personkit.synth.mot.write_mot_sequence``). Sequences of one seed show the same
  people (``crossing``: 14, ``street640``: the first 8 of them; ground-truth identity
  ``synth:SEED:ID``), sequences of different seeds different people;
* all of them are tracked with the model from their ground-truth boxes (``--mot-source gt``)
  and indexed together (``personkit.index.build.index_sources``: each entry gets the identity
  its boxes overlap most);
* **pairs**: every pair of entries from different sources, both with an identity: the same
  identity or strangers, and their cosine distance. At the index's threshold
  (``index.json``'s calibration, ``same_person_threshold``): stranger acceptance (false match
  rate among stranger pairs), recall (among same-identity pairs) and precision among the
  pairs called "same" (at this benchmark's mix of pairs); the largest threshold that accepts
  at most 1 % of stranger pairs, and the recall there;
* **open set**: the calibration's own protocol (:func:`calibrate_match_threshold`) on track
  means: each entry queries the whole index, once as a known person (accepted and correct when
  its nearest entry, not of its own source if of its identity, is its identity and within the
  threshold) and once as a stranger with its identity removed (any acceptance is false). Its
  stranger acceptance and recall at the index's threshold, its own 1 % threshold, and that
  threshold fitted on half the seeds (even or odd) and applied to the other half;
* **top k** (k = 1, 5, 10): each entry with an identity searches the index by its embedding
  (``PeopleIndex.search``, itself left out: what ``personkit search --example ID`` shows; its
  ``same_person`` checked against the threshold), and the hits within the threshold are
  counted: correct (same identity), strangers, or unknown (an entry without an identity, left
  out of the precision); also with the query's own source left out (cross-camera only), and at
  the two 1 % thresholds measured here besides the index's.

Intervals (95 %) are percentile bootstraps over identities (``--bootstrap`` resamples): an
identity drawn ``c`` times weighs its same-identity pairs by ``c``, a stranger pair by the
product of its two identities' counts, a query by its identity's count.

Usage::

    python benchmarks/bench_same_person.py [--run runs/demo/run] [--presets crossing street640]
        [--seeds 0-5] [--mot-source gt|det] [--workdir DIR [--skip-index]]
        [--bootstrap 2000] [--out benchmarks/results/same_person.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from personkit.index.build import index_sources
from personkit.index.people import PeopleIndex
from personkit.inference import Predictor
from personkit.metrics.matching import STRANGER_ACCEPT, calibrate_match_threshold
from personkit.runtime import describe_machine, machine_info
from personkit.synth.mot import write_mot_sequence

KS = (1, 5, 10)


def parse_seeds(text: str) -> list[int]:
    """``0-5`` or ``0,1,4`` (or both: ``0-3,7``) as a list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        a, _, b = part.strip().partition("-")
        seeds += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return sorted(set(seeds))


def make_cameras(root: Path, presets: list[str], seeds: list[int]) -> list[str]:
    """Every ``PRESET-SEED`` sequence under ``root`` (kept when already written)."""
    out = []
    for seed in seeds:
        for preset in presets:
            seq = root / f"{preset}-{seed}"
            if not (seq / "seqinfo.ini").is_file():
                write_mot_sequence(seq, preset, seed)
            out.append(str(seq))
    return out


def largest_threshold(dist: np.ndarray, weight: np.ndarray, rate: float) -> float:
    """The largest float32 ``t`` whose weighted share of ``dist <= t`` is at most ``rate``."""
    order = np.argsort(dist, kind="stable")
    d, w = dist[order].astype(np.float32), weight[order]
    cum = np.cumsum(w) / w.sum()
    over = np.flatnonzero(cum > rate + 1e-12)
    if not len(over):
        return float(d[-1])
    first = d[over[0]]
    return float(np.nextafter(first, np.float32(-np.inf)))


def share(hit: np.ndarray, weight: np.ndarray) -> float:
    return float((hit * weight).sum() / weight.sum()) if weight.sum() else float("nan")


def interval(values: list[float]) -> list[float]:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return [round(float(np.percentile(v, 2.5)), 5), round(float(np.percentile(v, 97.5)), 5)]


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a same-identity distance < a stranger distance), ties counting half."""
    allv = np.concatenate([pos, neg])
    ranks = np.empty(len(allv))
    order = np.argsort(allv, kind="stable")
    sorted_v = allv[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    r_pos = ranks[: len(pos)].sum()
    return float(1.0 - (r_pos - len(pos) * (len(pos) - 1) / 2) / (len(pos) * len(neg)))


def pair_stats(d: np.ndarray, same: np.ndarray, a: np.ndarray, b: np.ndarray,
               threshold: float, n_ids: int, boot: int, rng: np.random.Generator
               ) -> dict[str, Any]:
    """Pairwise rates at ``threshold`` and at the 1 %-stranger threshold, with bootstrap
    intervals over identities (``a``, ``b``: the two identities' indices of each pair)."""
    def rates(w_same: np.ndarray, w_diff: np.ndarray) -> dict[str, float]:
        called = d <= threshold
        fm, tm = (called & ~same), (called & same)
        t1 = largest_threshold(d[~same], w_diff, STRANGER_ACCEPT)
        tp, fp = (tm[same] * w_same).sum(), (fm[~same] * w_diff).sum()
        return {"stranger_accept": share(called[~same], w_diff),
                "recall": share(called[same], w_same),
                "precision": float(tp / (tp + fp)) if tp + fp else float("nan"),
                "threshold_1pct": t1, "recall_at_1pct": share(d[same] <= t1, w_same),
                "stranger_accept_at_1pct": share(d[~same] <= t1, w_diff)}

    point = rates(np.ones(int(same.sum())), np.ones(int((~same).sum())))
    draws: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(boot):
        c = np.bincount(rng.integers(n_ids, size=n_ids), minlength=n_ids).astype(float)
        w_same, w_diff = c[a[same]], c[a[~same]] * c[b[~same]]
        if w_same.sum() == 0 or w_diff.sum() == 0:
            continue
        for k, v in rates(w_same, w_diff).items():
            draws[k].append(v)
    called = d <= threshold
    return {"threshold": threshold,
            "stranger_pairs_accepted": int((called & ~same).sum()),
            "same_pairs_accepted": int((called & same).sum()),
            **{k: round(v, 5) for k, v in point.items()},
            "ci95": {k: interval(v) for k, v in draws.items()}}


def _nearest(d: np.ndarray, pid: np.ndarray, cam: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per usable query (the calibration's rule): the nearest same-identity entry of another
    source, the nearest other identity, and which queries those are."""
    same = pid[:, None] == pid[None, :]
    good = same & (cam[:, None] != cam[None, :])
    use = good.any(1) & (~same).any(1)
    near_good = np.where(good, d, np.inf).min(1)[use]
    near_other = np.where(~same, d, np.inf).min(1)[use]
    return near_good, near_other, use


def open_set_rates(near_good: np.ndarray, near_other: np.ndarray, t: float,
                   w: np.ndarray | None = None) -> dict[str, float]:
    """Stranger acceptance, recall and precision at ``t`` as the calibration defines them
    (:mod:`personkit.metrics.matching`), queries weighted by ``w``."""
    w = np.ones(len(near_good)) if w is None else w
    known = np.minimum(near_good, near_other)
    correct = (near_good <= near_other) & (known <= t)
    accepted = (w * (known <= t)).sum() + (w * (near_other <= t)).sum()
    return {"stranger_accept": share(near_other <= t, w), "recall": share(correct, w),
            "precision": float((w * correct).sum() / accepted) if accepted else float("nan")}


def open_set(d: np.ndarray, pid: np.ndarray, cam: np.ndarray, seed_of: np.ndarray,
             threshold: float, n_boot: int, rng: np.random.Generator) -> dict[str, Any]:
    """The calibration's protocol on track means (:func:`calibrate_match_threshold`: each
    entry queries every other entry, as a known person and as a stranger): its rates at
    ``threshold`` and its own 1 % threshold, with bootstrap intervals over the queries'
    identities; and the threshold calibrated on half the seeds applied to the other half."""
    cal = calibrate_match_threshold(d, pid, pid, cam, cam)
    near_good, near_other, use = _nearest(d, pid, cam)
    q_pid = pid[use]
    ids = np.unique(q_pid)
    q_of = np.searchsorted(ids, q_pid)
    point = {**open_set_rates(near_good, near_other, threshold),
             "threshold_1pct": cal["threshold"], "recall_at_1pct": cal["recall"]}
    draws: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(n_boot):
        w = np.bincount(rng.integers(len(ids), size=len(ids)), minlength=len(ids))[q_of]
        w = w.astype(float)
        t1 = largest_threshold(near_other, w, STRANGER_ACCEPT)
        for k, v in {**open_set_rates(near_good, near_other, threshold, w),
                     "threshold_1pct": t1,
                     "recall_at_1pct": open_set_rates(near_good, near_other, t1, w)["recall"]
                     }.items():
            draws[k].append(v)
    halves = []
    seeds = sorted(set(seed_of))
    folds = [set(seeds[0::2]), set(seeds[1::2])]
    for fit, test in (folds, folds[::-1]):
        f = np.array([s in fit for s in seed_of])
        e = np.array([s in test for s in seed_of])
        if not f.any() or not e.any():
            continue
        t = calibrate_match_threshold(d[np.ix_(f, f)], pid[f], pid[f], cam[f], cam[f])
        ng, no, _ = _nearest(d[np.ix_(e, e)], pid[e], cam[e])
        halves.append({"fit_seeds": sorted(fit), "test_seeds": sorted(test),
                       "threshold": round(t["threshold"], 6), "test_queries": len(ng),
                       **{k: round(v, 5) for k, v in
                          open_set_rates(ng, no, t["threshold"]).items()},
                       "index_threshold_on_test": {
                           k: round(v, 5) for k, v in open_set_rates(ng, no, threshold).items()}})
    return {"num_queries": int(use.sum()), "query_identities": len(ids),
            "at_index_threshold": {k: round(point[k], 5)
                                   for k in ("stranger_accept", "recall", "precision")},
            "threshold_1pct": round(point["threshold_1pct"], 6),
            "recall_at_1pct": round(point["recall_at_1pct"], 5),
            "ci95": {k: interval(v) for k, v in draws.items()},
            "calibrate_match_threshold": cal, "held_out_halves": halves}


def top_hits(index: PeopleIndex, meta: list[dict], emb: np.ndarray, ident: np.ndarray,
             src: np.ndarray, d_all: np.ndarray, thresholds: dict[str, float], n_boot: int,
             rng: np.random.Generator) -> dict[str, Any]:
    """Marks of "same person" among each query's top k, as a search shows them (through the
    index; checked against its ``same_person``) and with the query's own source left out
    (from the distances ``d_all``), at each of ``thresholds``."""
    queries = [i for i in range(len(meta)) if ident[i]]
    kmax = max(KS)
    lists: dict[str, list[list[int]]] = {"search": [], "other_sources": []}
    agree = 0
    pos = {m["id"]: j for j, m in enumerate(meta)}
    for i in queries:
        hits = index.search(emb[i], k=kmax, exclude=meta[i]["id"])["hits"]
        lists["search"].append([pos[h["id"]] for h in hits])
        if not all(h["same_person"] == (h["distance"] <= thresholds["index"]) for h in hits):
            raise RuntimeError(f"{meta[i]['id']}: same_person is not distance <= threshold")
        row = np.where(src != src[i], d_all[i], np.inf)
        lists["other_sources"].append(
            [j for j in np.argsort(row, kind="stable")[:kmax] if np.isfinite(row[j])])
        mine = [j for j in np.argsort(d_all[i], kind="stable") if j != i][:kmax]
        agree += mine == lists["search"][-1]
    q_ids = sorted(set(ident[queries]))
    q_of = np.array([q_ids.index(ident[i]) for i in queries])
    has_match = np.array([int((ident == ident[i]).sum()) > 1 for i in queries])
    boots = [np.bincount(rng.integers(len(q_ids), size=len(q_ids)),
                         minlength=len(q_ids))[q_of] for _ in range(n_boot)]
    out: dict[str, Any] = {"queries": len(queries), "identities": len(q_ids),
                           "queries_with_a_match": int(has_match.sum()),
                           "search_order_agrees_with_numpy": agree}
    for tname, t in thresholds.items():
        for view, hit_lists in lists.items():
            res = out.setdefault(f"{view}@{tname}", {"threshold": round(t, 6)})
            for k in KS:
                n = np.zeros((4, len(queries)))  # shown, marked, strangers, unknown
                for q, (i, hits) in enumerate(zip(queries, hit_lists, strict=True)):
                    for j in hits[:k]:
                        marked = d_all[i, j] <= t
                        n[:, q] += (1, marked, marked and bool(ident[j]) and ident[j] != ident[i],
                                    marked and not ident[j])
                shown, marked, strangers, unknown = n
                known = marked - unknown
                boot = [1 - float((c * strangers).sum() / (c * known).sum())
                        for c in boots if (c * known).sum()]
                res[f"top{k}"] = {
                    "hits": int(shown.sum()), "marked_same": int(marked.sum()),
                    "marked_strangers": int(strangers.sum()),
                    "marked_unknown": int(unknown.sum()),
                    "precision": (round(1 - float(strangers.sum() / known.sum()), 5)
                                  if known.sum() else None),
                    "precision_ci95": interval(boot) if boot else None,
                    "queries_with_a_stranger_marked": int((strangers > 0).sum()),
                    "marked_strangers_for_queries_without_a_match":
                        int(strangers[~has_match].sum())}
    return out


def analyse(index: PeopleIndex, n_boot: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    cal = index.info.calibration
    if not cal:
        raise SystemExit(f"{index.path}: the model has no calibrated same-person threshold "
                         f"(run personkit eval)")
    threshold = float(index.info.same_person_threshold)  # between track means, if calibrated
    meta, emb = index.store.vectors()
    emb = emb.astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ident = np.array([m["identity"] or "" for m in meta], dtype=object)
    src = np.array([m["source"] for m in meta], dtype=object)
    d_all = np.clip(1.0 - emb @ emb.T, 0.0, 2.0)

    keep = np.flatnonzero(ident != "")
    ids = sorted(set(ident[keep]))
    id_of = np.array([ids.index(x) for x in ident[keep]])
    seed_of = np.array([x.rsplit(":", 1)[0] for x in ident[keep]], dtype=object)
    cams = sorted(set(src[keep]))
    cam_of = np.array([cams.index(s) for s in src[keep]])
    d = d_all[np.ix_(keep, keep)]
    i, j = np.triu_indices(len(keep), 1)
    cross = cam_of[i] != cam_of[j]
    i, j = i[cross], j[cross]
    pd, same = d[i, j], id_of[i] == id_of[j]
    same_seed = seed_of[i] == seed_of[j]
    in_two = {x for x in ids if len({s for s, y in zip(src[keep], ident[keep], strict=True)
                                     if y == x}) > 1}
    counts = {"sources": len(set(src)), "entries": len(meta), "entries_with_identity": len(keep),
              "identities": len(ids), "identities_in_two_sources": len(in_two),
              "same_identity_pairs": int(same.sum()), "stranger_pairs": int((~same).sum()),
              "stranger_pairs_same_seed": int((~same & same_seed).sum()),
              "stranger_pairs_other_seed": int((~same & ~same_seed).sum()),
              "entries_per_source": {s: int((src == s).sum()) for s in sorted(set(src))}}
    q = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
    dist = {"quantiles": q,
            "same_identity": [round(float(v), 5) for v in np.quantile(pd[same], q)],
            "strangers": [round(float(v), 5) for v in np.quantile(pd[~same], q)],
            "strangers_same_seed": [round(float(v), 5)
                                    for v in np.quantile(pd[~same & same_seed], q)],
            "roc_auc": round(auc(pd[same], pd[~same]), 5)}
    accepted = pd <= threshold
    kinds = {"same_seed_strangers_accepted": ~same & same_seed,
             "other_seed_strangers_accepted": ~same & ~same_seed}
    by_kind = {k: f"{int(accepted[m].sum())} of {int(m.sum())}" for k, m in kinds.items()}
    pairs = {**pair_stats(pd, same, id_of[i], id_of[j], threshold, len(ids), n_boot, rng),
             **by_kind}
    opened = open_set(d, id_of, cam_of, seed_of, threshold, n_boot, rng)
    thresholds = {"index": threshold, "pairs_1pct": pairs["threshold_1pct"],
                  "open_set_1pct": opened["threshold_1pct"]}
    return {"calibration": cal, "counts": counts, "distances": dist, "pairs": pairs,
            "open_set": opened,
            "top_k": top_hits(index, meta, emb.astype(np.float32), ident, src, d_all,
                              thresholds, n_boot, rng)}


def report(r: dict[str, Any]) -> str:
    c, p, o = r["counts"], r["pairs"], r["open_set"]
    ci, oc = p["ci95"], o["ci95"]
    oi = o["at_index_threshold"]
    lines = [
        f"{c['sources']} sources, {c['entries']} entries ({c['entries_with_identity']} with an "
        f"identity), {c['identities']} identities ({c['identities_in_two_sources']} in two "
        f"sources); cross-source pairs: {c['same_identity_pairs']} same identity, "
        f"{c['stranger_pairs']} strangers ({c['stranger_pairs_same_seed']} of one seed)",
        f"distances (median): same {r['distances']['same_identity'][3]}, strangers "
        f"{r['distances']['strangers'][3]}; ROC AUC {r['distances']['roc_auc']}",
        "",
        f"{'track means':<46}{'value':>9}  95 % CI (identities)",
        f"{'index threshold (track means, else crops)':<46}{p['threshold']:>9.5f}",
        "per pair of entries from different sources:",
        f"{'  stranger acceptance':<46}{p['stranger_accept']:>9.4f}  {ci['stranger_accept']}"
        f"  ({p['stranger_pairs_accepted']} pairs)",
        f"{'  recall (same identity)':<46}{p['recall']:>9.4f}  {ci['recall']}",
        f"{'  precision of pairs called same':<46}{p['precision']:>9.4f}  {ci['precision']}",
        f"{'  threshold for 1 % of stranger pairs':<46}{p['threshold_1pct']:>9.5f}  "
        f"{ci['threshold_1pct']}",
        f"{'    recall there':<46}{p['recall_at_1pct']:>9.4f}  {ci['recall_at_1pct']}",
        f"per query, the calibration's protocol ({o['num_queries']} queries):",
        f"{'  stranger acceptance (nearest stranger)':<46}{oi['stranger_accept']:>9.4f}  "
        f"{oc['stranger_accept']}",
        f"{'  recall (nearest is the same identity)':<46}{oi['recall']:>9.4f}  {oc['recall']}",
        f"{'  threshold for 1 % of strangers':<46}{o['threshold_1pct']:>9.5f}  "
        f"{oc['threshold_1pct']}",
        f"{'    recall there':<46}{o['recall_at_1pct']:>9.4f}  {oc['recall_at_1pct']}",
    ]
    for h in o["held_out_halves"]:
        lines.append(f"  fit on seeds {h['fit_seeds']}: {h['threshold']:.5f}; on seeds "
                     f"{h['test_seeds']} ({h['test_queries']} queries): strangers "
                     f"{h['stranger_accept']:.4f}, recall {h['recall']:.4f} (index threshold: "
                     f"{h['index_threshold_on_test']['stranger_accept']:.4f}, "
                     f"{h['index_threshold_on_test']['recall']:.4f})")
    tk = r["top_k"]
    lines += ["", f"top k: {tk['queries']} queries (every entry with an identity), "
                  f"{tk['queries_with_a_match']} of them with another entry of their identity",
              f"{'top k hits marked same':<32}{'hits':>6}{'marked':>8}{'strangers':>10}"
                  f"{'precision':>10}  95 % CI"]
    for name, view in r["top_k"].items():
        if not isinstance(view, dict):
            continue
        for k in KS:
            t = view[f"top{k}"]
            prec = "-" if t["precision"] is None else f"{t['precision']:.4f}"
            lines.append(f"{name + ' top' + str(k):<32}{t['hits']:>6}{t['marked_same']:>8}"
                         f"{t['marked_strangers']:>10}{prec:>10}  {t['precision_ci95']}"
                         f"  ({t['marked_strangers_for_queries_without_a_match']} strangers "
                         f"for queries without a match)")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/demo/run", help="the model (run directory)")
    p.add_argument("--presets", nargs="+", default=["crossing", "street640"])
    p.add_argument("--seeds", default="0-5", help="e.g. 0-5 or 0,1,4")
    p.add_argument("--mot-source", default="gt", choices=("gt", "det"),
                   help="boxes tracked: ground truth (default) or the noisy det.txt")
    p.add_argument("--workdir", default=None,
                   help="folder for the sequences and the index (kept; default: a temp folder)")
    p.add_argument("--skip-index", action="store_true",
                   help="analyse the index already in --workdir (no rendering or tracking)")
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--out", default="benchmarks/results/same_person.json")
    args = p.parse_args()
    seeds = parse_seeds(args.seeds)
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="same_person_") as tmp:
        work = Path(args.workdir or tmp)
        t0 = time.perf_counter()
        idx = work / f"index-{args.mot_source}"
        if args.skip_index and not args.workdir:
            p.error("--skip-index needs --workdir")
        seqs = [] if args.skip_index else make_cameras(work / "cams", args.presets, seeds)
        t1 = time.perf_counter()
        if seqs:
            index_sources(idx, seqs, Predictor.from_checkpoint(args.run),
                          mot_source=args.mot_source)
        t2 = time.perf_counter()
        result = analyse(PeopleIndex.open(idx), args.bootstrap, 0)
        t3 = time.perf_counter()
    result = {"machine": describe_machine(machine), "machine_info": machine,
              "settings": {"run": args.run, "presets": args.presets, "seeds": seeds,
                           "mot_source": args.mot_source, "bootstrap": args.bootstrap,
                           "stranger_accept_target": STRANGER_ACCEPT},
              "seconds": {"render": round(t1 - t0, 1), "track_and_index": round(t2 - t1, 1),
                          "analysis": round(t3 - t2, 1)},
              **result}
    print(report(result))
    print(f"({result['seconds']}; {result['machine']})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
