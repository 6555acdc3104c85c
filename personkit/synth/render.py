"""Rasterising people: body and garment primitives, painter's ordering, part labels, joints.

Every person becomes a list of convex 2-D primitives (tapered capsules, ellipses, hulls of
projected 3-D boxes), each carrying a LIP class, a paint, a body ``group`` and a depth. They are
filled back to front, without anti-aliasing, into one *primitive-id* map; the part labels
(a LIP class per id), the colours (a paint per id) and joint visibility are all read from that
same map, so labels are pixel-exact with the picture.

Label choices (LIP has no bag or neck class):

* bags (backpack, shoulder bag, handbag) and their straps are **Background** (0);
* the neck is **Face** (13); hands belong to the arms (14/15), feet to the shoes (18/19);
* arm/leg classes are exposed skin only; sleeves take the class of their garment, trouser legs
  are Pants (9), a dress (torso and skirt) is Dress (6), a coat with its tail Coat (7).

A joint is *occluded* when, around its pixel, primitives of other body parts (another limb,
a bag, another person, a foreground object) outnumber those of its own part.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from personkit.synth import body as B
from personkit.synth.appearance import Identity, Texture
from personkit.synth.body import Skeleton, View

# LIP class ids.
BG, HAT, HAIR, GLOVE, GLASSES, UPPER, DRESS, COAT, SOCKS, PANTS = range(10)
JUMPSUIT, SCARF, SKIRT, FACE, L_ARM, R_ARM, L_LEG, R_LEG, L_SHOE, R_SHOE = range(10, 20)
_TOP_CLASS = {"shirt": UPPER, "coat": COAT, "dress": DRESS, "jumpsuit": JUMPSUIT}
_LOWER_CLASS = {"pants": PANTS, "shorts": PANTS, "skirt": SKIRT, "dress": DRESS,
                "jumpsuit": JUMPSUIT}

Paint = tuple | Texture

#: Body groups owning each joint (a joint is visible where these are on top).
JOINT_OWNERS: tuple[frozenset[str], ...] = tuple(frozenset(s) for s in (
    {"r_shin", "r_foot"}, {"r_thigh", "r_shin", "skirt"}, {"r_thigh", "pelvis", "torso", "skirt"},
    {"l_thigh", "pelvis", "torso", "skirt"}, {"l_thigh", "l_shin", "skirt"}, {"l_shin", "l_foot"},
    {"pelvis", "torso", "skirt", "r_thigh", "l_thigh"}, {"torso", "neck", "hair_back"},
    {"neck", "head", "hair_back"}, {"head", "hair_back"}, {"r_farm", "r_hand"},
    {"r_uarm", "r_farm"},
    {"r_uarm", "torso"}, {"l_uarm", "torso"}, {"l_uarm", "l_farm"}, {"l_farm", "l_hand"},
))


@dataclass
class Prim:
    """One filled convex shape (or several) of a person or object."""

    polys: list[np.ndarray]  # each k×2 image coordinates
    label: int  # LIP class
    paint: Paint
    group: str
    depth: float
    layer: int = 0
    person: int = 0


@dataclass
class Person:
    """A person to render: appearance, skeleton and view."""

    identity: Identity
    skel: Skeleton
    view: View
    order: float = 0.0  # scene depth (larger = nearer the camera, drawn later)


@dataclass
class Rendered:
    """The result of :func:`render`: picture, labels and per-person joints."""

    image: np.ndarray  # H×W×3 uint8 RGB, before camera effects
    labels: np.ndarray  # H×W uint8 LIP classes
    ids: np.ndarray  # H×W uint8 (uint16 past 254) primitive ids (0 = background)
    bag_mask: np.ndarray  # H×W bool: bag and foreground-object pixels (labelled Background)
    joints: list[np.ndarray] = field(default_factory=list)  # 16×2, 0-based pixels
    occluded: list[np.ndarray] = field(default_factory=list)  # 16 bool
    prims: list[Prim] = field(default_factory=list)  # primitive of id k is prims[k - 1]


# --------------------------------------------------------------------------------- shapes


_ARC = np.linspace(np.pi / 2, 3 * np.pi / 2, 7)
_ARC_CS = np.stack([np.cos(_ARC), np.sin(_ARC)], 1)  # half circle facing -x
_CIRCLE = {n: np.stack([np.cos(t), np.sin(t)], 1)
           for n in (8, 12, 18) for t in [np.linspace(0, 2 * np.pi, n, endpoint=False)]}


def capsule(p1: np.ndarray, p2: np.ndarray, r1: float, r2: float) -> np.ndarray:
    """Polygon of a tapered capsule between image points ``p1`` (radius r1) and ``p2``."""
    dx, dy = p2[0] - p1[0], p2[1] - p1[1]
    n = np.hypot(dx, dy)
    c, s = (dx / n, dy / n) if n > 1e-6 else (1.0, 0.0)
    rot = np.array([[c, s], [-s, c]])  # rotates the arc so it faces away from p2
    arc = _ARC_CS @ rot
    return np.concatenate([p1 + r1 * arc, p2 - r2 * arc])


def ellipse(c: np.ndarray, ax: float, ay: float, angle: float, n: int = 18) -> np.ndarray:
    """Polygon of an ellipse with half-axes ``ax``, ``ay`` rotated by ``angle`` (radians)."""
    u = _CIRCLE[n] * (ax, ay)
    ca, sa = np.cos(angle), np.sin(angle)
    return np.asarray(c, float) + u @ np.array([[ca, sa], [-sa, ca]])


def hull(points: np.ndarray) -> np.ndarray:
    """Convex hull of image points."""
    return cv2.convexHull(np.asarray(points, np.float32)).reshape(-1, 2).astype(np.float64)


def _box(center: np.ndarray, axes: np.ndarray, half: tuple[float, float, float]) -> np.ndarray:
    """The 8 corners of a 3-D box (columns of ``axes`` scaled by ``half``) around center."""
    s = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    return center + (s * np.array(half)) @ axes.T


# ------------------------------------------------------------------------------- the body


class _Builder:
    """Collects the primitives of one person."""

    def __init__(self, person: Person, index: int):
        self.p, self.idx = person, index
        self.ident, self.sk, self.view = person.identity, person.skel, person.view
        self.shape = self.sk.shape
        self.px = self.view.scale
        self.prims: list[Prim] = []
        self.j2, self.jd = self.view.project(self.sk.joints)

    def add(self, polys, label, paint, group, depth, layer=0):
        polys = polys if isinstance(polys, list) else [polys]
        self.prims.append(Prim(polys, label, paint, group, float(depth), layer, self.idx))

    def pt(self, p3: np.ndarray) -> tuple[np.ndarray, float]:
        xy, d = self.view.project(p3)
        return xy, float(d)

    def seg(self, a: np.ndarray, b: np.ndarray, ra: float, rb: float, label: int, paint,
            group: str, layer: int = 0, bias: float = 0.0) -> None:
        (pa, da), (pb, db) = self.pt(a), self.pt(b)
        self.add(capsule(pa, pb, ra * self.px, rb * self.px), label, paint, group,
                 (da + db) / 2 + bias, layer)

    def box(self, center, axes, half, label, paint, group, layer=0, bias=0.0) -> None:
        xy, d = self.view.project(_box(center, axes, half))
        self.add(hull(xy), label, paint, group, float(d.mean()) + bias, layer)


def _legs(b: _Builder) -> None:
    ident, sh, j = b.ident, b.shape, b.sk.joints
    lower_cls = _LOWER_CLASS[ident.lower_kind]
    pants = ident.lower_kind in ("pants", "shorts", "jumpsuit")
    for (hip, knee, ank), skin_cls, shoe_cls, key in (
            ((B.R_HIP, B.R_KNEE, B.R_ANK), R_LEG, R_SHOE, "r"),
            ((B.L_HIP, B.L_KNEE, B.L_ANK), L_LEG, L_SHOE, "l")):
        th, sn, ft = f"{key}_thigh", f"{key}_shin", f"{key}_foot"
        r0, r1, r2 = sh.leg_r, sh.leg_r * 0.8, sh.leg_r * 0.55
        b.seg(j[hip], j[knee], r0, r1, skin_cls, ident.skin, th, 0, -0.02)
        b.seg(j[knee], j[ank], r1, r2, skin_cls, ident.skin, sn, 0, -0.02)
        if pants:
            g = 1.15
            if ident.lower_long:
                b.seg(j[hip], j[knee], r0 * g, r1 * g, lower_cls, ident.lower, th, 1, -0.02)
                b.seg(j[knee], j[ank], r1 * g, r2 * g * 1.2,
                      lower_cls, ident.lower, sn, 1, -0.02)
            else:
                end = j[hip] + ident.lower_len * (j[knee] - j[hip])
                rr = r0 + ident.lower_len * (r1 - r0)
                b.seg(j[hip], end, r0 * g, rr * g * 1.1, lower_cls, ident.lower, th, 1, -0.02)
        elif ident.socks is not None:
            top = j[ank] + 0.12 * (j[knee] - j[ank])
            b.seg(j[ank], top, r2 * 1.1, r2 * 1.1, SOCKS, ident.socks, sn, 1, -0.02)
        heel, toe = b.sk.feet[key]
        b.seg(heel, toe, sh.sole * 0.62, sh.sole * 0.56, shoe_cls, ident.shoes, ft, 2, -0.02)
        b.seg(j[ank], 0.5 * (heel + toe), r2 * 1.1, sh.sole * 0.62, shoe_cls, ident.shoes,
              ft, 2, -0.02)


def _trunk(b: _Builder) -> None:
    ident, sh, j, rt = b.ident, b.shape, b.sk.joints, b.sk.torso_frame
    top_cls = _TOP_CLASS[ident.top_kind]
    P, T = j[B.PELVIS], j[B.THORAX]
    x, y, z = rt[:, 0], rt[:, 1], rt[:, 2]
    ring = lambda c, w, d: [c + sx * w * x + sz * d * z for sx in (-1, 1) for sz in (-1, 1)]
    waist_w = min(sh.shoulder, sh.hip * 1.25) * 0.92
    levels = [ring(T + 0.03 * y, sh.shoulder * 0.72, sh.depth * 0.8),
              ring(T - 0.012 * y, sh.shoulder * 1.08, sh.depth),
              ring(0.5 * (T + P) + 0.03 * y, waist_w, sh.depth * 0.95),
              ring(P - 0.005 * y, sh.hip * 1.45, sh.depth)]
    polys = [hull(b.view.project(np.array(levels[k] + levels[k + 1]))[0]) for k in range(3)]
    torso_depth = b.view.project(0.5 * (T + P))[1]
    b.add(polys, top_cls, ident.top, "torso", torso_depth)
    if ident.top_detail == "band":  # a coloured band around the chest
        band = ring(T - 0.07 * y, sh.shoulder * 1.1, sh.depth * 1.04) + ring(
            T - 0.13 * y, (sh.shoulder * 1.06 + waist_w) / 2 * 1.04, sh.depth * 1.03)
        b.add(hull(b.view.project(np.array(band))[0]), top_cls, ident.detail, "torso",
              torso_depth, 1)
    elif ident.top_detail == "logo":  # a print on the front, hidden from behind
        c = T - 0.1 * y + sh.depth * 1.02 * z
        xy, d = b.view.project(_box(c, rt, (sh.shoulder * 0.45, 0.045, 0.001)))
        b.add(hull(xy), top_cls, ident.detail, "torso", float(d.mean()), 1)
    # Hips / seat: the lower garment (or the dress) from the hip line down to the crotch.
    lower_cls = _LOWER_CLASS[ident.lower_kind]
    seat = ring(P - 0.005 * y, sh.hip * 1.45, sh.depth) + [
        P + sx * sh.hip * 1.2 * np.array([1.0, 0, 0]) + np.array([0, -0.075, sz * sh.depth])
        for sx in (-1, 1) for sz in (-1, 1)]
    b.add(hull(b.view.project(np.array(seat))[0]), lower_cls, ident.lower, "pelvis",
          b.view.project(P)[1] - 0.01)
    if ident.lower_kind in ("skirt", "dress") or ident.top_kind == "coat":
        _skirt(b, P)
    # Neck (labelled Face) and scarf.
    b.seg(T - 0.02 * y, j[B.NECK] + 0.01 * y, sh.head_r * 0.5, sh.head_r * 0.45, FACE,
          ident.skin, "neck", 0, -0.03)
    if ident.scarf is not None:
        b.seg(T + 0.005 * y, T + 0.03 * y, sh.head_r * 0.9, sh.head_r * 0.85, SCARF,
              ident.scarf, "neck", 1, 0.03)


def _skirt(b: _Builder, P: np.ndarray) -> None:
    """A flared cone from the waist: skirt, the skirt of a dress, or a coat's tail."""
    ident, sh = b.ident, b.shape
    if ident.lower_kind in ("skirt", "dress"):
        length, label, paint = ident.lower_len, _LOWER_CLASS[ident.lower_kind], ident.lower
        flare = 0.02 + 0.3 * (length - 0.17)
    else:  # coat tail
        length, label, paint, flare = 0.12, COAT, ident.top, 0.012
    ex, ez = np.array([1.0, 0, 0]), np.array([0, 0, 1.0])
    pts = [P + np.array([0, 0.03, 0]) + sx * sh.hip * 1.35 * ex + sz * sh.depth * 1.05 * ez
           for sx in (-1, 1) for sz in (-1, 1)]
    j = b.sk.joints
    for side, (hip, knee, ank) in ((-1, (B.R_HIP, B.R_KNEE, B.R_ANK)),
                                   (1, (B.L_HIP, B.L_KNEE, B.L_ANK))):
        if length <= sh.thigh:
            hem = j[hip] + length / sh.thigh * (j[knee] - j[hip])
        else:
            hem = j[knee] + min(1.0, (length - sh.thigh) / sh.shin) * (j[ank] - j[knee])
        r = sh.leg_r + flare
        pts += [hem + side * r * ex + sz * r * 0.8 * ez for sz in (-1, 1)]
        pts += [hem - side * 0.3 * r * ex + sz * r * 0.8 * ez for sz in (-1, 1)]
    xy, d = b.view.project(np.array(pts))
    b.add(hull(xy), label, paint, "skirt", float(d.mean()) + 0.08, 1)


def _arms(b: _Builder) -> None:
    ident, sh, j = b.ident, b.shape, b.sk.joints
    top_cls = _TOP_CLASS[ident.top_kind]
    for (sho, elb, wri), skin_cls, key in (((B.R_SHO, B.R_ELB, B.R_WRI), R_ARM, "r"),
                                           ((B.L_SHO, B.L_ELB, B.L_WRI), L_ARM, "l")):
        ua, fa, hd = f"{key}_uarm", f"{key}_farm", f"{key}_hand"
        r0, r1, r2 = sh.arm_r, sh.arm_r * 0.85, sh.arm_r * 0.65
        b.seg(j[sho], j[elb], r0, r1, skin_cls, ident.skin, ua, 0, 0.02)
        b.seg(j[elb], j[wri], r1, r2, skin_cls, ident.skin, fa, 0, 0.02)
        hand = j[wri] + 0.6 * sh.hand_r * (j[wri] - j[elb]) / (np.linalg.norm(j[wri] - j[elb])
                                                                + 1e-9)
        b.seg(j[wri], hand, sh.hand_r * 0.9, sh.hand_r, skin_cls, ident.skin, hd, 0, 0.02)
        g = 1.2
        if ident.long_sleeves:
            b.seg(j[sho], j[elb], r0 * g, r1 * g, top_cls, ident.top, ua, 1, 0.02)
            b.seg(j[elb], j[wri], r1 * g, r2 * g, top_cls, ident.top, fa, 1, 0.02)
        else:
            end = j[sho] + ident.sleeve_len * (j[elb] - j[sho])
            b.seg(j[sho], end, r0 * g * 1.05, r1 * g * 1.05, top_cls, ident.top, ua, 1, 0.02)
        if ident.gloves is not None:
            b.seg(j[wri], hand, sh.hand_r * 1.05, sh.hand_r * 1.15, GLOVE, ident.gloves, hd, 1,
                  0.02)


def _head(b: _Builder) -> None:
    ident, sh, j, rh = b.ident, b.shape, b.sk.joints, b.sk.head_frame
    x, y, z = rh[:, 0], rh[:, 1], rh[:, 2]
    N, H = j[B.NECK], j[B.HEAD]
    C = 0.5 * (N + H)
    hy = 0.5 * sh.head
    facing = b.view.facing(rh)
    c2, dc = b.pt(C)
    up2 = b.view.project(H)[0] - b.view.project(N)[0]
    ang = np.arctan2(up2[1], up2[0]) + np.pi / 2
    px = b.px
    if ident.hair_long:  # hair falling behind the head onto the shoulders
        a = C - 0.45 * sh.head_r * z
        e = b.sk.joints[B.THORAX] - 0.07 * b.sk.torso_frame[:, 1] - 0.7 * sh.depth * \
            b.sk.torso_frame[:, 2]
        b.seg(a, e, sh.head_r * 1.2, sh.head_r * 1.05, HAIR, ident.hair, "hair_back", 0)
        rt = b.sk.torso_frame
        for s in (-1, 1) if ident.hair_front else ():  # locks over the shoulders in front
            a = C + s * 0.95 * sh.head_r * x + 0.1 * hy * y
            e = j[B.THORAX] + s * sh.shoulder * 0.55 * rt[:, 0] - 0.09 * rt[:, 1] + \
                sh.depth * 0.95 * rt[:, 2]
            b.seg(a, e, sh.head_r * 0.3, sh.head_r * 0.28, HAIR, ident.hair, "hair_back", 1)
    width = sh.head_r * px
    face = facing > -0.3
    b.add(ellipse(c2, width, hy * px * 1.0, ang), FACE if face else HAIR,
          ident.skin if face else ident.hair, "head", dc, 0)
    cap, dcap = b.pt(C + 0.38 * hy * y - 0.5 * sh.head_r * z)
    b.add(ellipse(cap, width * 1.04, hy * px * (0.66 if ident.hair_long else 0.62), ang), HAIR,
          ident.hair, "head", dc, 1)
    if facing > 0.2:
        eye_c = C + 0.02 * hy * y + 0.9 * sh.head_r * z
        if ident.sunglasses:
            g2, _ = b.pt(eye_c)
            b.add(ellipse(g2, width * (0.3 + 0.55 * facing), 0.2 * hy * px, ang, 12), GLASSES,
                  (20.0, 20.0, 25.0), "head", dc, 3)
        else:
            for s in (-1, 1):
                e2, _ = b.pt(eye_c + s * 0.38 * sh.head_r * x)
                b.add(ellipse(e2, max(0.5, 0.12 * width), max(0.5, 0.07 * hy * px), 0, 8),
                      FACE, (40.0, 30.0, 30.0), "head", dc, 2)
    if ident.hat is not None:
        hat, _ = b.pt(C + 0.62 * hy * y - 0.1 * sh.head_r * z)
        brim, _ = b.pt(C + 0.3 * hy * y + 0.45 * sh.head_r * z)
        b.add([ellipse(hat, width * 1.1, hy * px * 0.55, ang),
               ellipse(brim, width * (0.9 + 0.45 * abs(facing)), hy * px * 0.16, ang)],
              HAT, ident.hat, "head", dc, 4)


def _bags(b: _Builder) -> None:
    ident, sh, j, rt = b.ident, b.shape, b.sk.joints, b.sk.torso_frame
    x, y, z = rt[:, 0], rt[:, 1], rt[:, 2]
    T, P = j[B.THORAX], j[B.PELVIS]
    if ident.backpack is not None:
        c = T - 0.2 * y - (sh.depth + 0.075) * z
        b.box(c, rt, (sh.shoulder * 0.8, 0.2, 0.075), BG, ident.backpack, "bag", 0)
        for s in (-1, 1):  # straps over the front of the shoulders
            a = T + s * sh.shoulder * 0.6 * x + 0.02 * y
            e = T + s * sh.shoulder * 0.75 * x - 0.22 * y + sh.depth * 1.05 * z
            b.seg(a, e, 0.025, 0.025, BG, ident.backpack, "strap", 3, 0.01)
    if ident.bag is not None:
        s = ident.bag_side
        c = P + s * (sh.hip * 1.45 + 0.05) * np.array([1.0, 0, 0]) + np.array([0, 0.02, 0])
        b.box(c, np.eye(3), (0.04, 0.1, 0.12), BG, ident.bag, "bag", 3, 0.01)
        start = T - s * sh.shoulder * 0.7 * x + 0.02 * y
        for sz in (-1, 1):  # strap across the chest and across the back
            b.seg(start, c + 0.05 * y + sz * sh.depth * z * 1.1, 0.009, 0.009, BG, ident.bag,
                  "strap", 3, sz * (sh.depth + 0.02))
    if ident.handbag is not None:
        wri = j[B.L_WRI] if ident.hand_side > 0 else j[B.R_WRI]
        c = wri - np.array([0, 0.14, 0]) + np.array([0, 0, 0.03])
        b.box(c, np.eye(3), (0.13, 0.11, 0.05), BG, ident.handbag, "bag", 3, 0.04)


def person_prims(person: Person, index: int) -> tuple[list[Prim], np.ndarray]:
    """All primitives of one person and its 2-D joints (16×2 image coordinates)."""
    b = _Builder(person, index)
    _legs(b)
    _trunk(b)
    _arms(b)
    _head(b)
    _bags(b)
    return b.prims, b.j2


# ------------------------------------------------------------------------------ rasterise


def object_prim(poly: np.ndarray, paint: Paint, index: int) -> Prim:
    """A foreground object (labelled Background) drawn over everything of person ``index``."""
    return Prim([np.asarray(poly, float)], BG, paint, "object", 1e3, 0, index)


def _fill(ids: np.ndarray, prim: Prim, value: int) -> None:
    for poly in prim.polys:
        pts = np.round(poly * 16).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillConvexPoly(ids, pts, value, lineType=cv2.LINE_8, shift=4)


def rasterise(prims: list[Prim], orders: list[float], h: int, w: int) -> tuple[np.ndarray,
                                                                                list[Prim]]:
    """Fill ``prims`` back to front into an id map (uint8; uint16 for crowded scenes such as
    the synthetic MOT sequences); returns it and the prims by id - 1."""
    key = lambda p: (orders[p.person], p.depth, p.layer)
    ordered = sorted(prims, key=key)
    if len(ordered) > 65534:
        raise ValueError("too many primitives for a uint16 id map")
    ids = np.zeros((h, w), np.uint8 if len(ordered) <= 254 else np.uint16)
    for k, prim in enumerate(ordered):
        _fill(ids, prim, k + 1)
    return ids, ordered


def _texture_pixels(tex: Texture, ys: np.ndarray, xs: np.ndarray, origin: np.ndarray,
                    px: float) -> np.ndarray:
    """Colours of a texture at pixel coordinates (relative to a person origin, scale px)."""
    c1, c2 = np.array(tex.c1, np.float32), np.array(tex.c2, np.float32)
    period = max(2.0, tex.period * px)
    u = (xs - origin[0]) / period
    v = (ys - origin[1]) / period
    if tex.kind == "hstripes":
        m = (v % 1.0) < tex.duty
    elif tex.kind == "vstripes":
        m = (u % 1.0) < tex.duty
    elif tex.kind == "checks":
        m = ((np.floor(u) + np.floor(v)) % 2 == 0) | ((u % 1.0) < tex.duty - 0.3)
    elif tex.kind == "noise":
        f = 1.0 + 0.18 * np.sin(2.3 * u + tex.seed % 7) * np.sin(1.7 * v + tex.seed % 5) + \
            0.1 * np.sin(5.1 * u + 3.7 * v + tex.seed % 11)
        return np.clip(c1[None] * f[:, None], 0, 255)
    else:
        m = np.ones(len(xs), bool)
    return np.where(m[:, None], c1[None], c2[None])


def compose(ids: np.ndarray, ordered: list[Prim], background: np.ndarray,
            people: list[Person]) -> np.ndarray:
    """Paint the id map (uint8 RGB): flat colours, garment textures, outlines, background."""
    n = len(ordered)
    lut = np.zeros((n + 1, 3), np.float32)
    textured: dict[tuple[int, int], list[int]] = {}
    for k, prim in enumerate(ordered, start=1):
        if isinstance(prim.paint, Texture):
            lut[k] = prim.paint.c1
            if prim.paint.kind != "plain":
                textured.setdefault((prim.person, id(prim.paint)), []).append(k)
        else:
            lut[k] = prim.paint
    img = np.clip(lut + 0.5, 0, 255).astype(np.uint8)[ids]
    for (pi, _), ks in textured.items():
        ys, xs = np.nonzero(np.isin(ids, ks))
        if len(ys) == 0:
            continue
        view = people[pi].view
        tex = ordered[ks[0] - 1].paint
        img[ys, xs] = _texture_pixels(tex, ys.astype(np.float32), xs.astype(np.float32),
                                      np.array([view.x0, view.y0]), view.scale) + 0.5
    # Outlines where body groups meet (and around the silhouette): darken both sides.
    groups: dict[tuple[int, str], int] = {}
    gmap = np.array([0] + [groups.setdefault((p.person, p.group), len(groups) + 1)
                           for p in ordered], np.int32)[ids]
    edge = np.zeros(ids.shape, bool)
    dx = gmap[:, 1:] != gmap[:, :-1]
    dy = gmap[1:] != gmap[:-1]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:] |= dy
    edge[:-1] |= dy
    sel = edge & (ids > 0)
    img[sel] = (img[sel].astype(np.uint16) * 184 >> 8).astype(np.uint8)
    np.copyto(img, background, where=(ids == 0)[..., None])
    return img


def occlusion(ids: np.ndarray, ordered: list[Prim], person: int, joints: np.ndarray,
              radius: int) -> np.ndarray:
    """16 bools: joint hidden by primitives other than its own body part (see module doc)."""
    h, w = ids.shape
    names = [""] + [p.group if p.person == person else "#other" for p in ordered]
    neutral = np.array([n in ("", "strap") for n in names])  # count for neither side
    out = np.zeros(len(joints), bool)
    for k, (x, y) in enumerate(joints):
        xi, yi = int(round(x)), int(round(y))
        if not (0 <= xi < w and 0 <= yi < h):
            continue
        win = ids[max(0, yi - radius):yi + radius + 1, max(0, xi - radius):xi + radius + 1]
        counts = np.bincount(win.ravel(), minlength=len(names))
        own_mask = np.array([n in JOINT_OWNERS[k] for n in names])
        own = counts[own_mask].sum()  # none of its own part in view (a wide strap): hidden
        out[k] = own == 0 or counts[~own_mask & ~neutral].sum() > own
    return out


def render(h: int, w: int, background: np.ndarray, people: list[Person],
           objects: list[Prim] = ()) -> Rendered:
    """Render people (and foreground objects) over a background (H×W×3 float/uint8 RGB)."""
    prims: list[Prim] = []
    joints = []
    for i, person in enumerate(people):
        p, j2 = person_prims(person, i)
        prims += p
        joints.append(j2)
    orders = [p.order for p in people] + [1e9]
    objs = []
    for o in objects:
        o.person = len(people)
        objs.append(o)
    ids, ordered = rasterise(prims + objs, orders, h, w)
    labels = np.array([BG] + [p.label for p in ordered], np.uint8)[ids]
    bagmask = np.array([False] + [p.group in ("bag", "strap", "object") for p in ordered])[ids]
    bg8 = background if background.dtype == np.uint8 else np.clip(background, 0, 255).astype(
        np.uint8)
    image = compose(ids, ordered, bg8, people)
    occl = []
    for i, person in enumerate(people):
        radius = max(1, int(round(person.view.scale * 0.012)))
        occl.append(occlusion(ids, ordered, i, joints[i], radius))
    return Rendered(image, labels, ids, bagmask, joints, occl, ordered)
