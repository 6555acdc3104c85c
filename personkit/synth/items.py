"""Planning and rendering of single items (one Market crop, one MPII scene, one LIP image).

Planning is cheap and sequential (names, identities, cameras); rendering is a pure function of
``(seed, item)``: every item draws from its own ``numpy.random.Generator`` keyed by
``(seed, dataset, index)``, so items can be rendered in any order or in parallel and the same
seed always gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from personkit.data.io import encode_jpeg
from personkit.synth import body as B
from personkit.synth.appearance import get_identity, sample_identity
from personkit.synth.bias import (
    TODAY_HALF_BODY,
    TODAY_VIEWS,
    DatasetLook,
    bias_rng,
    draw_effects,
    looks_at,
)
from personkit.synth.body import View, sample_pose, skeleton, walking_pose
from personkit.synth.render import Person, Rendered, object_prim, render
from personkit.synth.scenes import (
    LIP_DOMAIN,
    MARKET_CAMERAS,
    MPII_DOMAIN,
    Domain,
    apply_camera,
    background,
    jpeg_quality,
    market_background,
)

MARKET_SIZE = (128, 64)  # H, W of a Market crop
MIN_JOINTS = 4  # MPII people with fewer joints inside the image are not annotated
# Dataset codes in RNG keys.
K_MARKET, K_MPII, K_LIP, K_MARKET_PLAN, K_DISTRACTOR = 1, 2, 3, 4, 5
#: Typical walking directions (yaw) per Market camera: towards, away, across.
CAMERA_YAWS: tuple[tuple[float, ...], ...] = (
    (0.2, np.pi + 0.2), (1.4, -1.7), (0.0, np.pi, 1.57), (-0.5, 2.6), (0.4, np.pi - 0.3, -1.57),
    (1.7, -1.3, 0.1),
)


@dataclass(frozen=True)
class MarketItem:
    """One Market crop to render."""

    index: int
    folder: str  # bounding_box_train | bounding_box_test | query
    name: str
    kind: str  # good | query | junk | distractor
    pid: int  # identity shown (junk: the real pid; distractor: -1 for none)
    cam: int
    yaw: float
    phase: float


@dataclass(frozen=True)
class SceneItem:
    """One MPII scene or LIP image to render."""

    index: int
    name: str
    split: str  # train | val | test


# -------------------------------------------------------------------------- encoding helpers


def encode_png(labels: np.ndarray) -> bytes:
    """Single-channel 8-bit PNG bytes."""
    ok, buf = cv2.imencode(".png", labels, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    assert ok
    return buf.tobytes()


# ---------------------------------------------------------------------------------- Market


def _market_placement(kind: str, rng: np.random.Generator, h: int, w: int,
                      jitter: float = 1.0) -> tuple[float, ...]:
    """Person scale (px per height unit) and ground point for an (mis)aligned crop;
    ``jitter`` scales the misalignment of detector boxes (dataset bias)."""
    if kind == "query":  # hand-drawn: tight and centred
        hf, dx, dy = rng.uniform(0.86, 0.92), rng.normal(0, 0.02), rng.normal(0, 0.01)
    elif kind == "good":  # detector boxes: looser
        hf, dx, dy = (rng.uniform(0.78, 0.92), rng.normal(0, 0.05 * jitter),
                      rng.normal(0, 0.025 * jitter))
    else:  # junk / distractor fragments: badly aligned
        mode = rng.integers(3)
        hf = rng.uniform(0.8, 0.9) if mode < 2 else rng.uniform(1.5, 2.3)
        dx = rng.choice([-1, 1]) * rng.uniform(0.45, 0.7) if mode == 0 else rng.normal(0, 0.05)
        dy = rng.choice([-1, 1]) * rng.uniform(0.3, 0.5) if mode == 1 else (
            rng.uniform(-0.6, 0.6) if mode == 2 else 0.0)
    scale = hf * h
    return scale, w * (0.5 + dx), h * (0.5 + hf / 2 + dy)


@dataclass
class MarketTruth:
    """The true pose and parts of one Market crop, at the crop's size (128×64).

    ``joints`` are the crop's own person's 16 joints (0-based pixel centres, NaN outside the
    crop), None when the crop shows nobody (an empty distractor); ``labels`` are the LIP
    classes of every person in the crop (a passer-by at the edge too), 0 = background.
    """

    joints: np.ndarray | None
    labels: np.ndarray


def _look(bias: float, name: str) -> DatasetLook | None:
    """The dataset's look at ``bias``; None at 0 (today's world, untouched)."""
    return looks_at(bias)[name] if bias else None


def render_market(item: MarketItem, seed: int, bias: float = 0.0) -> tuple[bytes, MarketTruth]:
    """JPEG bytes of one 128×64 Market crop and its true joints and part labels, with the
    dataset bias ``bias`` (personkit.synth.bias).

    The truth is read off the render without drawing from the item's generator, so the
    JPEG bytes are those of a render without it.
    """
    rng = np.random.default_rng([seed, K_MARKET, item.index])
    look = _look(bias, "market")
    dom = (look.domains if look else MARKET_CAMERAS)[item.cam - 1]
    r = rng.uniform(*dom.render_scale)
    h, w = round(MARKET_SIZE[0] * r), round(MARKET_SIZE[1] * r)
    bg = market_background(seed, item.cam, h, w, rng)
    people = []
    if item.kind != "distractor" or rng.random() < 0.5:
        ident = (get_identity(seed, item.pid) if item.pid > 0 else
                 sample_identity(np.random.default_rng([seed, K_DISTRACTOR, item.index]), 0))
        scale, x0, y0 = _market_placement(item.kind, rng, h, w,
                                          look.look.jitter if look else 1.0)
        pose = walking_pose(rng, item.yaw + rng.normal(0, 0.15), item.phase,
                            rng.uniform(0.25, 0.42), ident.stoop)
        people.append(Person(ident, skeleton(ident.shape, pose), View(pose.yaw, scale, x0, y0)))
    has_own = bool(people)
    if rng.random() < 0.08:  # a passer-by at the edge of the box
        other = sample_identity(np.random.default_rng([seed, K_DISTRACTOR, 10**6 + item.index]), 0)
        yaw = float(rng.uniform(-np.pi, np.pi))
        pose = walking_pose(rng, yaw, float(rng.uniform(0, 6.3)), 0.3, 0.0)
        side = rng.choice([-1, 1])
        view = View(yaw, h * rng.uniform(0.8, 0.95), w * (0.5 + side * rng.uniform(0.6, 0.8)),
                    h * rng.uniform(0.92, 1.0))
        people.append(Person(other, skeleton(other.shape, pose), view,
                             order=float(rng.choice([-1, 1]))))
    rendered = render(h, w, bg, people)
    fx = draw_effects(look.look, bias_rng(seed, K_MARKET, item.index)) if look else None
    img = apply_camera(rendered.image, dom, rng, size=MARKET_SIZE, effects=fx)
    truth = market_truth(rendered, has_own, (h, w))
    return encode_jpeg(img, jpeg_quality(dom, rng)), truth


def market_truth(rendered: Rendered, has_own: bool, size: tuple[int, int]) -> MarketTruth:
    """Joints and labels of a render of ``size`` (H, W) mapped to the 128×64 crop, as
    :func:`apply_camera` resizes the picture (pixel centres; nearest label)."""
    (h, w), (H, W) = size, MARKET_SIZE
    labels = rendered.labels
    if (h, w) != (H, W):
        labels = cv2.resize(labels, (W, H), interpolation=cv2.INTER_NEAREST_EXACT)
    if not has_own:
        return MarketTruth(None, labels)
    j = (rendered.joints[0].astype(np.float64) + 0.5) * np.array([W / w, H / h]) - 0.5
    inside = (j[:, 0] >= 0) & (j[:, 0] <= W - 1) & (j[:, 1] >= 0) & (j[:, 1] <= H - 1)
    return MarketTruth(np.where(inside[:, None], j, np.nan), labels)


# ------------------------------------------------------------------------ MPII and LIP scenes


def _occluder(rng: np.random.Generator, h: int, w: int, box: np.ndarray, index: int):
    """A foreground object (table, box, pole, car) covering part of a person's box."""
    x1, y1, x2, y2 = box
    bh, bw = y2 - y1, x2 - x1
    col = tuple(float(c) for c in rng.uniform(40, 200, 3))
    if rng.random() < 0.6:  # low object in front of the legs
        top = y1 + bh * rng.uniform(0.55, 0.8)
        left = x1 + bw * rng.uniform(-0.6, 0.3)
        poly = np.array([[left, top], [left + bw * rng.uniform(0.6, 1.2), top],
                         [left + bw * rng.uniform(0.6, 1.2), h + 5], [left, h + 5]])
    else:  # a pole or door frame
        cx, half = x1 + bw * rng.uniform(0.1, 0.9), max(2.0, bw * rng.uniform(0.06, 0.15))
        poly = np.array([[cx - half, -5], [cx + half, -5], [cx + half, h + 5], [cx - half, h + 5]])
    return object_prim(poly, col, index)


@dataclass
class PersonAnno:
    """Annotation of one rendered person (0-based pixel coordinates)."""

    joints: np.ndarray  # 16×2
    annotated: np.ndarray  # 16 bool (inside the image)
    occluded: np.ndarray  # 16 bool
    head_box: tuple[float, float, float, float]
    center: tuple[float, float]
    scale: float  # standing height / 200 px


def person_anno(rendered: Rendered, i: int, view: View, h: int, w: int) -> PersonAnno:
    """Joints, visibility, head box, centre and scale of person ``i``.

    ``scale`` is the person's height (standing height, or more for stretched poses) / 200 px;
    ``center`` sits 0.075·scale·200 above the centre of the full-body joint box (clipped to the
    image), so that the usual crop (side scale·200, centre moved down by 0.075 of it, or 1.25×
    that side as HRNet) covers the whole person.
    """
    j = rendered.joints[i]
    inside = (j[:, 0] >= 0) & (j[:, 0] <= w - 1) & (j[:, 1] >= 0) & (j[:, 1] <= h - 1)
    neck, top = j[B.NECK], j[B.HEAD]
    c, s = 0.5 * (neck + top), float(np.linalg.norm(top - neck))
    lo, hi = j.min(0), j.max(0)
    size = max(view.scale, 1.1 * float((hi - lo).max()))
    cx = float(np.clip((lo[0] + hi[0]) / 2, 0, w - 1))
    cy = float(np.clip((lo[1] + hi[1]) / 2 - 0.075 * size, 0, h - 1))
    return PersonAnno(j.copy(), inside, rendered.occluded[i] & inside,
                      (c[0] - s / 2, c[1] - s / 2, c[0] + s / 2, c[1] + s / 2), (cx, cy),
                      size / 200)


def _scene_person(rng: np.random.Generator, yaw_p: tuple[float, float, float]) -> tuple:
    """A random identity and pose (yaw from P(front, back, side))."""
    ident = sample_identity(rng, 0)
    view = int(rng.choice(3, p=yaw_p))
    yaw = (0.0, np.pi, rng.choice([-1, 1]) * np.pi / 2)[view] + rng.normal(0, 0.35)
    return ident, sample_pose(rng, "mixed", float(yaw))


@dataclass
class Scene:
    """A rendered scene before camera effects, with the generator to continue with."""

    rendered: Rendered
    people: list[Person]
    background: np.ndarray
    rng: np.random.Generator
    look: DatasetLook | None = None  # dataset bias (None: today's world)
    brng: np.random.Generator | None = None  # its generator


def _biased_scene(look: DatasetLook | None, brng: np.random.Generator | None,
                  style: str) -> tuple[str, float]:
    """The background style and person size factor of a scene under dataset bias."""
    if look is None:
        return style, 1.0
    u = brng.random(3)
    if u[0] < look.look.swap:
        style = look.look.styles[int(u[1] * len(look.look.styles))]
    lo, hi = look.look.scale
    return style, lo + u[2] * (hi - lo)


def mpii_scene(item: SceneItem, seed: int, bias: float = 0.0) -> Scene:
    """The people, labels and joints of one MPII-like scene (before camera effects)."""
    rng = np.random.default_rng([seed, K_MPII, item.index])
    look = _look(bias, "mpii")
    brng = bias_rng(seed, K_MPII, item.index) if look else None
    w, h = int(rng.choice([288, 320, 352])), int(rng.choice([224, 240, 256]))
    style, size = _biased_scene(look, brng, str(rng.choice(MPII_DOMAIN.styles)))
    bg = background(style, h, w, rng)
    views = look.look.views if look else TODAY_VIEWS["mpii"]
    n = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    slots = rng.permutation(n)
    people: list[Person] = []
    for k in range(n):
        ident, pose = _scene_person(rng, views)
        sk = skeleton(ident.shape, pose)
        hp = h * rng.uniform(0.5, 0.82) * (1.0 if n == 1 else rng.uniform(0.7, 0.95)) * size
        x0 = w * (slots[k] + 0.5) / n + rng.normal(0, w * 0.05)
        bottom = rng.uniform(0.85, 1.0) if rng.random() < 0.8 else rng.uniform(1.05, 1.35)
        y0 = max(h * bottom, hp * sk.joints[:, 1].max() + 4)  # keep the head inside
        people.append(Person(ident, sk, View(pose.yaw, hp, x0, y0), order=y0 + 0.01 * k))
    objects = []
    if rng.random() < 0.15:
        p = people[int(rng.integers(n))]
        xy, _ = p.view.project(p.skel.joints)
        objects.append(_occluder(rng, h, w, np.r_[xy.min(0), xy.max(0)], 0))
    return Scene(render(h, w, bg, people, objects), people, bg, rng, look, brng)


def _finish(sc: Scene, domain: Domain) -> bytes:
    """Camera (and bias effects) and JPEG of a scene."""
    dom = sc.look.domain if sc.look else domain
    fx = draw_effects(sc.look.look, sc.brng) if sc.look else None
    img = apply_camera(sc.rendered.image, dom, sc.rng, effects=fx)
    return encode_jpeg(img, jpeg_quality(dom, sc.rng))


def render_mpii(item: SceneItem, seed: int, bias: float = 0.0
                ) -> tuple[bytes, list[PersonAnno]]:
    """JPEG bytes and person annotations of one MPII-like scene (dataset bias ``bias``)."""
    sc = mpii_scene(item, seed, bias)
    h, w = sc.rendered.labels.shape
    annos = [person_anno(sc.rendered, i, p.view, h, w) for i, p in enumerate(sc.people)]
    annos = [a for a in annos if a.annotated.sum() >= MIN_JOINTS]  # others stay unannotated
    return _finish(sc, MPII_DOMAIN), annos


def lip_scene(item: SceneItem, seed: int, bias: float = 0.0) -> Scene:
    """The person, labels and joints of one LIP-like image (before camera effects)."""
    rng = np.random.default_rng([seed, K_LIP, item.index])
    look = _look(bias, "lip")
    brng = bias_rng(seed, K_LIP, item.index) if look else None
    ident, pose = _scene_person(rng, look.look.views if look else TODAY_VIEWS["lip"])
    sk = skeleton(ident.shape, pose)
    style, size = _biased_scene(look, brng, "")
    half = look.look.half_body if look else TODAY_HALF_BODY
    hp = rng.uniform(120, 210) * size
    xy, _ = View(pose.yaw, hp, 0, 0).project(sk.joints)
    lo, hi = xy.min(0) - hp * 0.08, xy.max(0) + hp * 0.06
    bw, bh = hi - lo
    crop = rng.random()
    h = int(np.clip(bh * rng.uniform(1.02, 1.15), 80, 300))
    if crop < half:  # half-body: cut between the hips and the knees
        h = int(bh * rng.uniform(0.5, 0.7))
    w = int(np.clip(max(bw * rng.uniform(1.0, 1.2), h * rng.uniform(0.42, 0.68)), 70, 240))
    x0 = (w - bw) / 2 - lo[0] + rng.normal(0, 0.04 * w)
    if half <= crop < half + 0.1:  # cut at one side
        x0 += rng.choice([-1, 1]) * bw * rng.uniform(0.15, 0.3)
    y0 = (h - bh) * rng.uniform(0.3, 0.7) - lo[1] if crop >= half else rng.uniform(4, 10) - lo[1]
    view = View(pose.yaw, hp, float(x0), float(y0))
    today = str(rng.choice(LIP_DOMAIN.styles))
    bg = background(style or today, h, w, rng, clutter=(1, 5))
    objects = []
    if rng.random() < 0.1:
        xy, _ = view.project(sk.joints)
        objects.append(_occluder(rng, h, w, np.r_[xy.min(0), xy.max(0)], 0))
    person = Person(ident, sk, view)
    return Scene(render(h, w, bg, [person], objects), [person], bg, rng, look, brng)


def render_lip(item: SceneItem, seed: int, bias: float = 0.0
               ) -> tuple[bytes, bytes, PersonAnno]:
    """JPEG bytes, label PNG bytes and the person annotation of one LIP-like image (dataset
    bias ``bias``)."""
    sc = lip_scene(item, seed, bias)
    h, w = sc.rendered.labels.shape
    anno = person_anno(sc.rendered, 0, sc.people[0].view, h, w)
    return _finish(sc, LIP_DOMAIN), encode_png(sc.rendered.labels), anno
