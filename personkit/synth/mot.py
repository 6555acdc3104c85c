"""Synthetic MOT Challenge sequences: people of the synthetic world walking through a static scene.

A sequence is a static camera over one background with a few foreground pillars. People with
persistent identities (:func:`~personkit.synth.appearance.get_identity`, drawn from an id range
disjoint from the Market-like training ids) enter at an image border, walk across at their own
speed (with pauses and, in the ``crossing`` preset, turns), pass each other at similar depths
and leave at a border. Everything is a pure function of ``(preset, seed)``.

Written in the MOT16 layout (Milan et al., arXiv:1603.00831)::

    SEQ/seqinfo.ini            name, imDir, frameRate, seqLength, imWidth, imHeight, imExt,
                               identities (``synth:SEED``: the people of that seed)
    SEQ/img1/000001.jpg ...
    SEQ/gt/gt.txt              frame,id,left,top,w,h,1,1,visibility  (1-based pixels, amodal)
    SEQ/det/det.txt            frame,-1,left,top,w,h,score,-1,-1,-1

``det.txt`` is derived from the ground truth the way public detections behave: people less
than ``min_visible`` visible are never detected, others are missed with a probability that
grows with occlusion, boxes are jittered in proportion to their size, and false positives
(person-sized boxes anywhere on the ground) are added with lower scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from personkit.data.constants import MARKET_ATTRIBUTES
from personkit.data.io import encode_jpeg
from personkit.data.mot import read_seqinfo
from personkit.synth.appearance import get_identity
from personkit.synth.body import View, skeleton, walking_pose
from personkit.synth.render import Person, object_prim, render
from personkit.synth.scenes import background

K_MOT = 31  # dataset code in RNG keys
ID_OFFSET = 100_000  # identity ids of MOT people: disjoint from every Market pid


@dataclass(frozen=True)
class MotPreset:
    """Size and difficulty of one synthetic MOT sequence."""

    width: int
    height: int
    frames: int
    people: int  # identities that walk through
    fps: int
    speed: tuple[float, float]  # walking speed, in person heights per second
    depth_band: tuple[float, float]  # foot line range as a fraction of the image height
    turn_prob: float  # chance per second that a walker turns round
    pause_prob: float  # chance per second that a walker stops for a while
    pillars: int  # static foreground occluders
    miss_prob: float  # detector misses of fully visible people
    min_visible: float  # less visible than this: never detected
    jitter: float  # box jitter, std as a fraction of the box size
    false_positives: float  # mean false detections per frame


MOT_PRESETS: dict[str, MotPreset] = {
    "tiny": MotPreset(256, 192, 12, 3, 10, (0.5, 0.8), (0.75, 0.85), 0.0, 0.0, 1, 0.05, 0.2,
                      0.03, 0.2),
    "crossing": MotPreset(480, 270, 150, 14, 8, (0.4, 0.9), (0.78, 0.86), 0.15, 0.12, 2, 0.08,
                          0.3, 0.04, 0.4),
    # the tiny scene's people seen by a second camera: another size, farther away
    "tiny-b": MotPreset(320, 240, 12, 3, 10, (0.5, 0.8), (0.62, 0.72), 0.0, 0.0, 0, 0.05, 0.2,
                        0.03, 0.2),
    # a VGA camera at 25 frames/s with up to 8 people (the pipeline benchmark's input)
    "street640": MotPreset(640, 480, 150, 8, 25, (0.4, 0.9), (0.7, 0.9), 0.1, 0.1, 2, 0.05,
                           0.3, 0.03, 0.3),
}


def get_mot_preset(name: str) -> MotPreset:
    """The MOT preset called ``name``; ValueError listing the valid names otherwise."""
    try:
        return MOT_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown MOT preset {name!r}; valid: {sorted(MOT_PRESETS)}") from None


@dataclass
class Walker:
    """One identity's path: per frame its foot position (NaN when not in the scene)."""

    pid: int
    x: np.ndarray  # foot x per frame (NaN outside the visit)
    y: np.ndarray  # foot y per frame
    height: float  # person height in pixels
    direction: np.ndarray  # +1 walking right, -1 left, per frame
    phase: np.ndarray  # gait phase per frame


def plan_walkers(preset: MotPreset, seed: int) -> list[Walker]:
    """Paths of every identity: entries spread over the sequence, alternating sides."""
    walkers = []
    h, w, n = preset.height, preset.width, preset.frames
    for k in range(preset.people):
        rng = np.random.default_rng([seed, K_MOT, 1, k])
        foot = h * rng.uniform(*preset.depth_band)
        height = foot * rng.uniform(0.5, 0.62)
        start = int(rng.integers(0, max(1, int(n * 0.7)))) if k >= 2 else 0
        d = 1.0 if k % 2 == 0 else -1.0
        margin = height * 0.3
        x0 = -margin if d > 0 else w + margin
        if start == 0:  # people already in view at the first frame
            x0 = rng.uniform(0.1, 0.4) * w if d > 0 else rng.uniform(0.6, 0.9) * w
        speed = height * rng.uniform(*preset.speed) / preset.fps
        xs, ys = np.full(n, np.nan), np.full(n, np.nan)
        dirs, phases = np.ones(n), np.zeros(n)
        x, ph, pause = x0, rng.uniform(0, 2 * np.pi), 0
        for t in range(start, n):
            if t > start and not (-margin * 1.5 <= x <= w + margin * 1.5):
                break
            xs[t], ys[t], dirs[t], phases[t] = x, foot + rng.normal(0, 0.3), d, ph
            if pause > 0:
                pause -= 1
                continue
            if rng.random() < preset.pause_prob / preset.fps:
                pause = int(rng.integers(preset.fps // 2, preset.fps * 2))
            if rng.random() < preset.turn_prob / preset.fps:
                d = -d
            x += d * speed
            ph += 2 * np.pi * speed / (height * 0.75)
        walkers.append(Walker(ID_OFFSET + k + 1, xs, ys, height, dirs, phases))
    return walkers


def _pillars(preset: MotPreset, seed: int) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
    rng = np.random.default_rng([seed, K_MOT, 2])
    out = []
    for _ in range(preset.pillars):
        cx = rng.uniform(0.2, 0.8) * preset.width
        half = preset.width * rng.uniform(0.02, 0.035)
        poly = np.array([[cx - half, -5], [cx + half, -5], [cx + half, preset.height + 5],
                         [cx - half, preset.height + 5]])
        out.append((poly, tuple(int(c) for c in rng.integers(60, 200, 3))))
    return out


def render_frame(preset: MotPreset, seed: int, walkers: list[Walker], t: int,
                 bg: np.ndarray) -> tuple[np.ndarray, list[tuple[int, np.ndarray, float]]]:
    """The RGB frame ``t`` (0-based) and ``(pid, amodal xyxy box, visibility)`` per person."""
    h, w = preset.height, preset.width
    people, pids = [], []
    for wk in walkers:
        if np.isnan(wk.x[t]):
            continue
        ident = get_identity(seed, wk.pid)
        rng = np.random.default_rng([seed, K_MOT, 3, wk.pid])  # the same gait every frame
        yaw = -wk.direction[t] * np.pi / 2 + 0.25 * wk.direction[t]
        pose = walking_pose(rng, float(yaw), float(wk.phase[t]), 0.35, ident.stoop)
        sk = skeleton(ident.shape, pose)
        view = View(float(yaw), wk.height, float(wk.x[t]), float(wk.y[t]))
        people.append(Person(ident, sk, view, order=float(wk.y[t]) + 1e-3 * wk.pid))
        pids.append(wk.pid)
    objects = [object_prim(poly, col, 0) for poly, col in _pillars(preset, seed)]
    rendered = render(h, w, bg, people, objects)
    owner = np.array([-1] + [p.person for p in rendered.prims])[rendered.ids]
    annos = []
    for i, pid in enumerate(pids):
        prims = [p for p in rendered.prims if p.person == i and p.group != "object"]
        pts = np.concatenate([poly for p in prims for poly in p.polys])
        x1, y1 = pts.min(0)
        x2, y2 = pts.max(0)
        solo = np.zeros((h, w), np.uint8)
        for p in prims:
            for poly in p.polys:
                cv2.fillConvexPoly(solo, np.round(poly).astype(np.int32), 1)
        full = int(solo.sum())
        vis = float((owner == i).sum()) / full if full else 0.0
        annos.append((pid, np.array([x1, y1, x2 + 1, y2 + 1]), min(1.0, vis)))
    return rendered.image, annos


def _clip_box(box: np.ndarray, w: int, h: int) -> np.ndarray | None:
    x1, y1, x2, y2 = np.clip(box[0], 0, w), np.clip(box[1], 0, h), np.clip(box[2], 0, w), \
        np.clip(box[3], 0, h)
    if x2 - x1 < 4 or y2 - y1 < 8:
        return None
    return np.array([x1, y1, x2, y2])


def detections(preset: MotPreset, seed: int, t: int,
               annos: list[tuple[int, np.ndarray, float]]) -> list[tuple[np.ndarray, float]]:
    """Noisy detections ``(xyxy, score)`` of frame ``t`` from its ground truth."""
    rng = np.random.default_rng([seed, K_MOT, 4, t])
    h, w = preset.height, preset.width
    out = []
    for _, box, vis in annos:
        if vis < preset.min_visible:
            continue
        miss = preset.miss_prob + (1 - preset.miss_prob) * 0.5 * (1 - vis) ** 2
        if rng.random() < miss:
            continue
        bw, bh = box[2] - box[0], box[3] - box[1]
        noisy = box + rng.normal(0, preset.jitter, 4) * np.array([bw, bh, bw, bh])
        clipped = _clip_box(noisy, w, h)
        if clipped is not None:
            out.append((clipped, float(np.clip(rng.normal(0.85, 0.08) * (0.6 + 0.4 * vis),
                                               0.05, 1.0))))
    for _ in range(rng.poisson(preset.false_positives)):
        bh = h * rng.uniform(0.2, 0.5)
        cx, foot = rng.uniform(0, w), h * rng.uniform(0.6, 1.0)
        box = _clip_box(np.array([cx - bh * 0.2, foot - bh, cx + bh * 0.2, foot]), w, h)
        if box is not None:
            out.append((box, float(rng.uniform(0.2, 0.6))))
    return out


def _mot_row(frame: int, tid: int, box: np.ndarray, rest: str) -> str:
    x1, y1, x2, y2 = (float(v) for v in box)
    return f"{frame},{tid},{x1 + 1:.2f},{y1 + 1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{rest}"


def write_mot_sequence(out_dir: str | Path, preset: str | MotPreset = "tiny", seed: int = 0,
                       name: str | None = None) -> Path:
    """Render one synthetic MOT sequence into ``out_dir`` and return its folder.

    Ground-truth ids are ``1..people`` (the identity's index + 1), in MOT's ``gt.txt`` with a
    visibility column; every sequence of one seed shows the same people (id ``k`` is the same
    person in each), which ``seqinfo.ini`` states as ``identities=synth:SEED``;
    ``det/det.txt`` holds the noisy detections (see the module docstring).
    """
    p = get_mot_preset(preset) if isinstance(preset, str) else preset
    seq = Path(out_dir)
    (seq / "img1").mkdir(parents=True, exist_ok=True)
    (seq / "gt").mkdir(exist_ok=True)
    (seq / "det").mkdir(exist_ok=True)
    rng = np.random.default_rng([seed, K_MOT, 0])
    bg = background(str(rng.choice(["plaza", "street", "shop", "building"])), p.height,
                    p.width, rng)
    walkers = plan_walkers(p, seed)
    gt_rows, det_rows = [], []
    for t in range(p.frames):
        image, annos = render_frame(p, seed, walkers, t, bg)
        (seq / "img1" / f"{t + 1:06d}.jpg").write_bytes(encode_jpeg(image, 92))
        for pid, box, vis in annos:
            gt_rows.append(_mot_row(t + 1, pid - ID_OFFSET, box, f"1,1,{vis:.3f}"))
        for box, score in detections(p, seed, t, annos):
            det_rows.append(_mot_row(t + 1, -1, box, f"{score:.3f},-1,-1,-1"))
    (seq / "gt" / "gt.txt").write_text("\n".join(gt_rows) + "\n", encoding="utf-8")
    (seq / "det" / "det.txt").write_text("\n".join(det_rows) + "\n", encoding="utf-8")
    (seq / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name or seq.name}\nimDir=img1\nframeRate={p.fps}\n"
        f"seqLength={p.frames}\nimWidth={p.width}\nimHeight={p.height}\nimExt=.jpg\n"
        f"identities=synth:{seed}\n",
        encoding="utf-8")
    return seq


def sequence_person(seq_dir: str | Path, gt_id: int) -> tuple[str, dict[str, str]]:
    """The identity (``synth:SEED:ID``, as ``personkit index`` names it) and the Market
    attribute labels (``{name: class name}``, :data:`~personkit.data.constants.MARKET_ATTRIBUTES`)
    of ground-truth id ``gt_id`` of a sequence written by :func:`write_mot_sequence`: the
    labels :func:`~personkit.track.calibrate.calibrate_track_attributes` fits on.

    Raises:
        ValueError: ``seq_dir`` is not a synthetic sequence (its ``seqinfo.ini`` names no
            ``identities=synth:SEED``).
    """
    info = read_seqinfo(Path(seq_dir))
    space = info.get("identities", "")
    kind, _, seed = space.partition(":")
    if kind != "synth" or not seed.isdigit():
        raise ValueError(f"{Path(seq_dir) / 'seqinfo.ini'}: identities={space!r} is not "
                         f"synth:SEED, so its people's attributes are unknown")
    return synthetic_person(int(seed), gt_id)


def synthetic_person(seed: int, gt_id: int) -> tuple[str, dict[str, str]]:
    """:func:`sequence_person` for ground-truth id ``gt_id`` of the sequences of ``seed``."""
    ident = get_identity(seed, ID_OFFSET + int(gt_id))
    codes = ident.market_attributes()
    labels = {n: c[codes[n] - 1] for n, c in MARKET_ATTRIBUTES.items() if n in codes}
    for name, value in (("upcolor", ident.up_name), ("downcolor", ident.down_name)):
        if value is not None:
            labels[name] = value
    return f"synth:{seed}:{int(gt_id)}", labels
