"""Planning the three datasets and writing them to disk (see :func:`synthesize`)."""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from personkit.checkpoint import write_json
from personkit.data.datasets.market_auto import AutoAnnotation, write_market_auto
from personkit.synth.appearance import get_identity
from personkit.synth.bias import manifest
from personkit.synth.items import (
    CAMERA_YAWS,
    K_MARKET_PLAN,
    MarketItem,
    SceneItem,
    encode_png,
    render_lip,
    render_market,
    render_mpii,
)
from personkit.synth.presets import Preset, get_preset
from personkit.synth.writers import (
    lip_csv_row,
    mpii_json_records,
    write_lines,
    write_market_attributes,
    write_mpii_mat,
)

MARKET_DIR, MPII_DIR, LIP_DIR = "Market-1501-v15.09.15", "mpii", "LIP"
MARKER = "personkit_synth.json"
#: The true pose and parts of every Market crop, in the ``market_auto`` format, inside the
#: Market root. Nothing reads it for training by default (``market_auto`` reads
#: ``auto_annotations``); it scores automatic annotations (``personkit score-annotations``).
HIDDEN_TRUTH_DIR = "hidden_truth"
#: Bumped whenever the same preset and seed would render different files.
#: 3: Market hidden truth (``hidden_truth/``); 4: bags, handbags and backpacks (and their
#: straps) at real sizes.
GENERATOR_VERSION = 4
MPII_MAT = "mpii_human_pose_v1_u12_1.mat"


@dataclass
class SynthSummary:
    """What :func:`synthesize` wrote (counts per split) and how long it took."""

    out_dir: Path
    preset: str
    seed: int
    market_root: Path
    mpii_root: Path
    lip_root: Path
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [f"  {key:<28} {value}" for key, value in self.counts.items()]
        return "\n".join([*lines, f"wrote {self.out_dir} ({self.seconds:.1f} s)"])


# ----------------------------------------------------------------------------------- Market


class _Names:
    """Unique Market file names: bumps the frame number on a collision."""

    def __init__(self):
        self.used: set[str] = set()

    def __call__(self, pid: int, cam: int, seq: int, frame: int, box: int) -> str:
        pid_s = "-1" if pid < 0 else f"{pid:04d}"
        while True:
            name = f"{pid_s}_c{cam}s{seq}_{frame % 1000000:06d}_{box:02d}.jpg"
            if name not in self.used:
                self.used.add(name)
                return name
            frame += 1


def _tracklets(seed: int, pid: int, per_id: float) -> list[dict]:
    """Cameras, sequence/frame numbers, walking direction and images per camera of an id."""
    rng = np.random.default_rng([seed, K_MARKET_PLAN, pid])
    k = int(rng.choice([2, 3, 4, 5, 6], p=[0.3, 0.3, 0.2, 0.12, 0.08]))
    cams = sorted(int(c) + 1 for c in rng.choice(6, k, replace=False))
    n = max(k, int(round(rng.normal(per_id, per_id * 0.25))))
    counts = 1 + rng.multinomial(n - k, np.ones(k) / k)
    out = []
    for cam, c in zip(cams, counts, strict=True):
        yaw = float(rng.choice(CAMERA_YAWS[cam - 1]) + rng.normal(0, 0.3))
        frame = int(rng.integers(100, 900000))
        steps = rng.integers(5, 40, size=c + 1)
        out.append(dict(cam=cam, seq=int(rng.integers(1, 7)), yaw=yaw,
                        phase=float(rng.uniform(0, 2 * np.pi)),
                        frames=[frame + int(s) for s in np.cumsum(steps)],
                        boxes=[int(b) for b in rng.integers(1, 6, size=c + 1)]))
    return out


def plan_market(seed: int, preset: Preset) -> tuple[list[MarketItem], list[int], list[int]]:
    """All Market crops to render, and the sorted train and test pids."""
    rng = np.random.default_rng([seed, K_MARKET_PLAN])
    n_tr, n_te = preset.market_train_ids, preset.market_test_ids
    pids = rng.permutation(np.arange(1, n_tr + n_te + 1))
    train, test = sorted(int(p) for p in pids[:n_tr]), sorted(int(p) for p in pids[n_tr:])
    names, items = _Names(), []

    def add(folder, kind, pid, shown, cam, seq, frame, box, yaw, phase):
        items.append(MarketItem(len(items), folder, names(pid, cam, seq, frame, box), kind,
                                shown, cam, yaw, phase))

    test_set = set(test)
    for pid in train + test:
        is_test = pid in test_set
        folder = "bounding_box_test" if is_test else "bounding_box_train"
        tracks = _tracklets(seed, pid, preset.market_images_per_id)
        qrng = np.random.default_rng([seed, K_MARKET_PLAN, pid, 1])
        want_q = qrng.random(len(tracks)) < preset.market_query_prob
        want_q[int(qrng.integers(len(tracks)))] = True
        for t, q in zip(tracks, want_q, strict=True):
            c = len(t["frames"]) - 1
            for i in range(c):
                add(folder, "good", pid, pid, t["cam"], t["seq"], t["frames"][i], t["boxes"][i],
                    t["yaw"], t["phase"] + 0.9 * i)
            if is_test and q:
                add("query", "query", pid, pid, t["cam"], t["seq"], t["frames"][c], 0, t["yaw"],
                    t["phase"] + 0.9 * c)
    _junk_and_distractors(seed, preset, test, items, add)
    return items, train, test


def _junk_and_distractors(seed: int, preset: Preset, test: list[int], items: list[MarketItem],
                          add: Callable) -> None:
    """Gallery junk (pid -1: misaligned crops of test ids) and distractors (pid 0000)."""
    rng = np.random.default_rng([seed, K_MARKET_PLAN, 0, 2])
    good = [it for it in items if it.kind == "good" and it.folder == "bounding_box_test"]
    for _ in range(int(round(preset.market_junk_frac * len(good)))):
        src = good[int(rng.integers(len(good)))]
        add("bounding_box_test", "junk", -1, src.pid, src.cam, int(rng.integers(1, 7)),
            int(rng.integers(100, 999999)), int(rng.integers(1, 9)), src.yaw,
            float(rng.uniform(0, 6.3)))
    for _ in range(int(round(preset.market_distractor_frac * len(good)))):
        cam = int(rng.integers(1, 7))
        add("bounding_box_test", "distractor", 0, -1, cam, int(rng.integers(1, 7)),
            int(rng.integers(100, 999999)), int(rng.integers(1, 9)),
            float(rng.uniform(-np.pi, np.pi)), float(rng.uniform(0, 6.3)))


# ------------------------------------------------------------------------------- MPII, LIP


def plan_scenes(seed: int, code: int, n: int, fracs: dict[str, float], digits: str
                ) -> list[SceneItem]:
    """``n`` scene items with unique random names and splits drawn with ``fracs``."""
    rng = np.random.default_rng([seed, 90 + code])
    used: set[str] = set()
    splits = list(fracs)
    p = np.array([fracs[s] for s in splits])
    draws = rng.choice(len(splits), size=n, p=p / p.sum())
    items = []
    for i in range(n):
        while True:
            if digits == "mpii":
                name = f"{int(rng.integers(10**9)):09d}.jpg"
            else:
                name = f"{int(rng.integers(1, 10**6))}_{int(rng.integers(1, 10**6))}.jpg"
            if name not in used:
                used.add(name)
                break
        items.append(SceneItem(i, name, splits[int(draws[i])]))
    return items


# ------------------------------------------------------------------------------- execution


def _job(args: tuple) -> object:
    kind, item, seed, root, bias = args
    if kind == "market":
        jpg, truth = render_market(item, seed, bias)
        Path(root, item.folder, item.name).write_bytes(jpg)
        Path(root, HIDDEN_TRUTH_DIR, "parts", item.folder, f"{item.name}.png").write_bytes(
            encode_png(truth.labels))
        return truth.joints
    if kind == "mpii":
        jpg, annos = render_mpii(item, seed, bias)
        Path(root, "images", item.name).write_bytes(jpg)
        return annos
    jpg, png, anno = render_lip(item, seed, bias)
    sub = "train" if item.split == "train" else "val"
    Path(root, "TrainVal_images", f"{sub}_images", item.name).write_bytes(jpg)
    Path(root, "TrainVal_parsing_annotations", f"{sub}_segmentations",
         item.name[:-4] + ".png").write_bytes(png)
    return anno


def _init_worker() -> None:
    import cv2
    cv2.setNumThreads(1)


def _run(jobs: list[tuple], workers: int, progress: bool = False) -> list:
    """Run ``jobs`` in order (results in job order) with ``workers`` processes; ``progress``
    shows a bar (one tick per rendered image)."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="synth", unit="image", disable=not progress,
               dynamic_ncols=True)
    results = []
    with bar:
        for r in _map(jobs, workers):
            results.append(r)
            bar.update(1)
    return results


def _map(jobs: list[tuple], workers: int) -> Iterator[object]:
    if workers <= 1:
        yield from map(_job, jobs)
        return
    # spawn, not fork: a forked child inherits whatever locks the parent's threads (torch's
    # OpenMP pool, TensorBoard writers, DataLoader workers) held, and can deadlock. Scripts
    # that call synthesize(workers > 1) need the usual `if __name__ == "__main__":` guard.
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap(_job, jobs, chunksize=16)


def _prepare(out: Path) -> None:
    """Remove a previous synthetic world in ``out``; refuse to touch anything else."""
    roots = [out / MARKET_DIR, out / MPII_DIR, out / LIP_DIR]
    if any(r.exists() for r in roots):
        if not (out / MARKER).is_file():
            raise FileExistsError(f"{out} already holds dataset folders that were not written "
                                  f"by personkit.synth (no {MARKER}); not overwriting")
        for r in roots:
            if r.exists():
                shutil.rmtree(r)
    folders = ("bounding_box_train", "bounding_box_test", "query")
    dirs = [out / MARKET_DIR / d for d in folders]
    dirs += [out / MARKET_DIR / HIDDEN_TRUTH_DIR / "parts" / d for d in folders]
    dirs += [out / MPII_DIR / "images", out / MPII_DIR / "annot"]
    dirs += [out / LIP_DIR / "TrainVal_images" / f"{s}_images" for s in ("train", "val")]
    dirs += [out / LIP_DIR / "TrainVal_parsing_annotations" / f"{s}_segmentations"
             for s in ("train", "val")]
    dirs += [out / LIP_DIR / "TrainVal_pose_annotations"]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)


def _write_market(out: Path, seed: int, train: list[int], test: list[int]) -> None:
    attrs = lambda pids: {p: get_identity(seed, p).market_attributes() for p in pids}
    write_market_attributes(out / "market_attribute.mat", attrs(train), attrs(test))


TRUTH_README = """\
Hidden ground truth of the synthetic Market-1501-like crops (personkit.synth).

The true 16 joints (pose.csv, confidence 1; joints outside the crop are empty) and LIP part
labels (parts/<folder>/<file name>.png, every person in the crop) of every crop, in the
market_auto format (docs/datasets.md). It is not a training set: no config reads it unless
pointed at it. It measures automatic annotations:
    personkit score-annotations <auto_annotations folder> <this folder>
"""


def _write_market_truth(root: Path, items: list[MarketItem], joints: list) -> int:
    """``hidden_truth/pose.csv`` and README (the PNGs are written by the workers); returns
    the number of crops with a person."""
    folder = root / HIDDEN_TRUTH_DIR
    rows = [AutoAnnotation(f"{it.folder}/{it.name}", j) for it, j in zip(items, joints,
                                                                       strict=True)
            if j is not None]
    write_market_auto(folder, rows)
    (folder / "README.txt").write_text(TRUTH_README)
    return len(rows)


def _write_mpii(root: Path, items: list[SceneItem], annos: list) -> dict[str, int]:
    names = [it.name for it in items]
    write_mpii_mat(root / MPII_MAT, names, annos, [it.split != "test" for it in items])
    by = {}
    for s in ("train", "val"):
        sel = [(it.name, a) for it, a in zip(items, annos, strict=True) if it.split == s]
        by[s] = ([n for n, _ in sel], [a for _, a in sel])
    for split, fname in (("train", "train.json"), ("val", "valid.json")):
        write_json(root / "annot" / fname, mpii_json_records(*by[split]), indent=None,
                   separators=(", ", ": "))
    write_lines(root / "annot" / "valid_images.txt", by["val"][0])
    return {f"mpii_{s}_images": len(by[s][0]) for s in by} | {
        f"mpii_{s}_persons": sum(len(a) for a in by[s][1]) for s in by} | {
        "mpii_test_images": sum(it.split == "test" for it in items)}


def _write_lip(root: Path, items: list[SceneItem], annos: list) -> dict[str, int]:
    counts = {}
    for split in ("train", "val"):
        sel = [(it, a) for it, a in zip(items, annos, strict=True) if it.split == split]
        write_lines(root / "TrainVal_images" / f"{split}_id.txt", [it.name[:-4] for it, _ in sel])
        write_lines(root / "TrainVal_pose_annotations" / f"lip_{split}_set.csv",
                    [lip_csv_row(it.name, a) for it, a in sel])
        counts[f"lip_{split}_images"] = len(sel)
    return counts


def synthesize(out_dir: str | Path, preset: str | Preset = "small", seed: int = 0,
               workers: int | None = None, progress: bool = False,
               bias: float = 0.0) -> SynthSummary:
    """Render the Market-1501-, MPII- and LIP-like datasets into ``out_dir``.

    Writes ``Market-1501-v15.09.15/``, ``mpii/`` and ``LIP/`` in their native layouts (see
    ``docs/synth.md``) plus a small marker file; a previous synthetic world in ``out_dir`` is
    replaced, other existing dataset folders make it raise :class:`FileExistsError`. The same
    ``seed`` gives byte-identical files whatever ``workers`` is (default: the preset's).
    ``preset`` is a name of :data:`PRESETS` or a :class:`Preset`; ``progress`` shows a bar.
    ``bias`` in [0, 1] dials how differently the three datasets look (personkit.synth.bias;
    0 = the same bytes as before the knob existed); the marker file records every knob.
    """
    start = time.perf_counter()
    bias = _check_bias(bias)
    cfg = preset if isinstance(preset, Preset) else get_preset(preset)
    preset = preset if isinstance(preset, str) else "custom"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _prepare(out)
    workers = cfg.workers if workers is None else workers
    m_items, train, test = plan_market(seed, cfg)
    p_items = plan_scenes(seed, 2, cfg.mpii_images, {
        "train": 1 - cfg.mpii_val_frac - cfg.mpii_test_frac, "val": cfg.mpii_val_frac,
        "test": cfg.mpii_test_frac}, "mpii")
    n_lip = cfg.lip_train + cfg.lip_val
    l_items = [SceneItem(it.index, it.name, "train" if it.index < cfg.lip_train else "val")
               for it in plan_scenes(seed, 3, n_lip, {"train": 1.0}, "lip")]
    roots = (out / MARKET_DIR, out / MPII_DIR, out / LIP_DIR)
    jobs = [("market", it, seed, str(roots[0]), bias) for it in m_items]
    jobs += [("mpii", it, seed, str(roots[1]), bias) for it in p_items]
    jobs += [("lip", it, seed, str(roots[2]), bias) for it in l_items]
    results = _run(jobs, workers, progress)
    _write_market(roots[0], seed, train, test)
    counts = _market_counts(m_items, train, test)
    counts["market_truth_poses"] = _write_market_truth(roots[0], m_items,
                                                       results[:len(m_items)])
    counts |= _write_mpii(roots[1], p_items, results[len(m_items):len(m_items) + len(p_items)])
    counts |= _write_lip(roots[2], l_items, results[len(m_items) + len(p_items):])
    write_json(out / MARKER, {"generator": "personkit.synth", "preset": preset, "seed": seed,
                              **world_key(cfg, bias), "looks": manifest(bias), "counts": counts},
               indent=1)
    return SynthSummary(out, preset, seed, *roots, counts=counts,
                        seconds=time.perf_counter() - start)


def _check_bias(bias: float) -> float:
    try:
        value = float(bias)
    except (TypeError, ValueError):
        raise ValueError(f"synth bias must be a number in [0, 1], got {bias!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"synth bias must be in [0, 1], got {bias!r}")
    return value


def world_key(preset: Preset, bias: float = 0.0) -> dict[str, Any]:
    """What decides the rendered files besides the seed: the generator version, the
    preset's sizes (not its worker count) and a non-zero dataset bias (bias 0 keeps the
    key it had before the knob existed). The marker file records it for caches."""
    params = {k: v for k, v in asdict(preset).items() if k != "workers"}
    return {"version": GENERATOR_VERSION, "params": params} | (
        {"bias": _check_bias(bias)} if bias else {})


def _market_counts(items: Iterable[MarketItem], train: list[int], test: list[int]
                   ) -> dict[str, int]:
    items = list(items)
    by = lambda folder, kind=None: sum(it.folder == folder and (kind is None or it.kind == kind)
                                       for it in items)
    return {"market_train_ids": len(train), "market_test_ids": len(test),
            "market_train_images": by("bounding_box_train"), "market_query_images": by("query"),
            "market_gallery_images": by("bounding_box_test"),
            "market_gallery_junk": by("bounding_box_test", "junk"),
            "market_gallery_distractors": by("bounding_box_test", "distractor")}


def ensure_world(data_dir: Path, preset: str, seed: int, progress: bool = False,
                 bias: float = 0.0) -> dict[str, Any]:
    """Synthesise the world into ``data_dir`` unless the same world is there: same preset
    name, sizes, seed, dataset bias and generator version."""
    marker = data_dir / "personkit_synth.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        same = {"preset": preset, "seed": seed, **world_key(get_preset(preset), bias)}
        if all(info.get(k) == v for k, v in same.items()) and info.get("bias", 0.0) == (
                same.get("bias", 0.0)):
            return {"cached": True, **info}
    start = time.perf_counter()
    summary = synthesize(data_dir, preset, seed, progress=progress, bias=bias)
    return {"cached": False, "seconds": time.perf_counter() - start,
            "counts": summary.counts}
