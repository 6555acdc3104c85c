"""Articulated body: a small 3-D stick figure with the 16 MPII joints.

The body lives in a local frame measured in units of its standing height (sole to head top
= 1): ``x`` points to the person's left, ``y`` up and ``z`` forward (the facing direction). A
:class:`Pose` sets joint angles within plausible limits; :func:`skeleton` turns shape and pose
into 3-D joints, and a :class:`View` (yaw, pixel scale, ground point) projects them
orthographically into the image. Yaw 0 faces the camera (the person's right appears on the
image left), yaw pi shows the back, +-pi/2 the sides; the projected ``depth`` grows towards the
camera, which the renderer uses for painter's ordering (and hence self-occlusion).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# MPII joint indices (see personkit.data.constants.MPII_JOINTS).
R_ANK, R_KNEE, R_HIP, L_HIP, L_KNEE, L_ANK, PELVIS, THORAX = range(8)
NECK, HEAD, R_WRI, R_ELB, R_SHO, L_SHO, L_ELB, L_WRI = range(8, 16)

#: Limits (min, max) in radians of every angle of a :class:`Pose`.
ARM_LIMITS = {"flex": (-0.8, 3.1), "abd": (-0.35, 2.9), "bend": (0.0, 2.5), "twist": (-0.3, 1.3)}
LEG_LIMITS = {"flex": (-0.6, 2.0), "abd": (-0.15, 0.7), "bend": (0.0, 2.4), "twist": (0.0, 0.0)}
TRUNK_LIMITS = {"lean": (-0.25, 1.3), "tilt": (-0.3, 0.3), "nod": (-0.5, 0.6)}


@dataclass(frozen=True)
class BodyShape:
    """Proportions of one identity, in units of its standing height."""

    head: float  # upper neck -> head top
    neck: float  # thorax -> upper neck
    torso: float  # pelvis -> thorax
    thigh: float
    shin: float
    sole: float  # ankle -> ground
    upper_arm: float
    forearm: float
    shoulder: float  # half the distance between the shoulder joints
    hip: float  # half the distance between the hip joints
    depth: float  # half the torso depth
    arm_r: float  # upper-arm radius
    leg_r: float  # thigh radius
    head_r: float  # half the head width
    hand_r: float
    foot: float  # foot length


def make_shape(female: bool, age: int, build: float, rng: np.random.Generator) -> BodyShape:
    """Proportions for a gender, age class (0 young .. 3 old) and build (width factor ~1)."""
    j = lambda: float(rng.uniform(0.96, 1.04))  # small individual variation
    if age == 0:  # a child: big head, short limbs
        chain = dict(head=0.165, neck=0.035, torso=0.28, thigh=0.225, shin=0.21, sole=0.04)
        arms = dict(upper_arm=0.16, forearm=0.14)
    else:
        chain = dict(head=0.13 * j(), neck=0.05, torso=0.29 * j(), thigh=0.245 * j(),
                     shin=0.24 * j(), sole=0.045)
        arms = dict(upper_arm=0.175 * j(), forearm=0.15 * j())
    total = sum(chain.values())
    chain = {k: v / total for k, v in chain.items()}
    if female:
        widths = dict(shoulder=0.09, hip=0.072, depth=0.055, arm_r=0.028, leg_r=0.044)
    else:
        widths = dict(shoulder=0.116, hip=0.06, depth=0.06, arm_r=0.032, leg_r=0.046)
    widths = {k: v * build * j() for k, v in widths.items()}
    head_r = (0.062 if age == 0 else 0.057) * j()
    return BodyShape(**chain, **arms, **widths, head_r=head_r, hand_r=0.022 * build,
                     foot=0.075 if age else 0.065)


@dataclass(frozen=True)
class Limb:
    """Angles of one arm or leg (radians).

    ``flex`` swings the limb forward (arm raised forward/up at ~pi), ``abd`` sideways away from
    the body, ``bend`` flexes the elbow (forearm forward/up) or knee (shin backward), ``twist``
    turns a bent forearm towards the body midline (arms only).
    """

    flex: float = 0.0
    abd: float = 0.08
    bend: float = 0.0
    twist: float = 0.0

    def clipped(self, limits: dict[str, tuple[float, float]]) -> Limb:
        """The limb with every angle clamped to ``limits``."""
        return Limb(**{k: float(np.clip(getattr(self, k), *limits[k])) for k in limits})


@dataclass(frozen=True)
class Pose:
    """Yaw, trunk angles and four limbs; ``yaw`` 0 faces the camera."""

    yaw: float = 0.0
    lean: float = 0.0  # torso pitch forward
    tilt: float = 0.0  # torso roll towards the person's left
    nod: float = 0.0  # head pitch forward
    r_arm: Limb = field(default_factory=Limb)
    l_arm: Limb = field(default_factory=Limb)
    r_leg: Limb = field(default_factory=Limb)
    l_leg: Limb = field(default_factory=Limb)

    def clipped(self) -> Pose:
        """The pose with every angle within the joint limits."""
        trunk = {k: float(np.clip(getattr(self, k), *TRUNK_LIMITS[k])) for k in TRUNK_LIMITS}
        return Pose(yaw=self.yaw, **trunk, r_arm=self.r_arm.clipped(ARM_LIMITS),
                    l_arm=self.l_arm.clipped(ARM_LIMITS), r_leg=self.r_leg.clipped(LEG_LIMITS),
                    l_leg=self.l_leg.clipped(LEG_LIMITS))


@dataclass(frozen=True)
class Skeleton:
    """3-D joints (16×3, local frame, ground at y = 0) and the frames the renderer needs."""

    joints: np.ndarray
    torso_frame: np.ndarray  # 3×3, columns: left, up, forward of the torso
    head_frame: np.ndarray  # 3×3, likewise for the head
    feet: dict[str, np.ndarray]  # 'r'/'l' -> (heel, toe) 2×3
    shape: BodyShape
    pose: Pose


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, s, 0], [-s, c, 0], [0, 0, 1.0]])


def _limb_dir(flex: float, abd: float, side: float, twist: float = 0.0) -> np.ndarray:
    """Unit direction of a limb segment hanging down, swung by ``flex`` and ``abd``."""
    d = np.array([side * np.sin(abd), -np.cos(abd) * np.cos(flex), np.cos(abd) * np.sin(flex)])
    if twist:
        t = -side * twist  # rotation about the vertical axis towards the midline
        c, s = np.cos(t), np.sin(t)
        d = np.array([c * d[0] + s * d[2], d[1], -s * d[0] + c * d[2]])
    return d


def skeleton(shape: BodyShape, pose: Pose) -> Skeleton:
    """3-D joints of ``shape`` in ``pose``, shifted so the lowest sole touches y = 0."""
    rt = _rot_z(pose.tilt) @ _rot_x(pose.lean)
    rh = rt @ _rot_x(pose.nod)
    j = np.zeros((16, 3))
    j[THORAX] = j[PELVIS] + shape.torso * rt[:, 1]
    j[NECK] = j[THORAX] + shape.neck * rh[:, 1]
    j[HEAD] = j[NECK] + shape.head * rh[:, 1]
    feet = {}
    for side, (sho, elb, wri), arm in ((-1.0, (R_SHO, R_ELB, R_WRI), pose.r_arm),
                                       (1.0, (L_SHO, L_ELB, L_WRI), pose.l_arm)):
        j[sho] = j[THORAX] + side * shape.shoulder * rt[:, 0] - 0.012 * rt[:, 1]
        j[elb] = j[sho] + shape.upper_arm * rt @ _limb_dir(arm.flex, arm.abd, side)
        fore = _limb_dir(arm.flex + arm.bend, arm.abd, side, arm.twist)
        j[wri] = j[elb] + shape.forearm * rt @ fore
    for side, (hip, knee, ank), leg, key in ((-1.0, (R_HIP, R_KNEE, R_ANK), pose.r_leg, "r"),
                                             (1.0, (L_HIP, L_KNEE, L_ANK), pose.l_leg, "l")):
        j[hip] = j[PELVIS] + side * shape.hip * np.array([1.0, 0.0, 0.0])
        j[knee] = j[hip] + shape.thigh * _limb_dir(leg.flex, leg.abd, side)
        shin = _limb_dir(leg.flex - leg.bend, leg.abd, side)
        j[ank] = j[knee] + shape.shin * shin
        fwd = np.cross(shin, [1.0, 0, 0])
        fwd /= np.linalg.norm(fwd) + 1e-9
        heel = j[ank] + shape.sole * 0.8 * shin - 0.25 * shape.foot * fwd
        toe = j[ank] + shape.sole * 0.8 * shin + 0.85 * shape.foot * fwd
        feet[key] = np.stack([heel, toe])
    ground = min(min(f[:, 1].min() for f in feet.values()) - shape.sole * 0.35,
                 j[:, 1].min())
    shift = np.array([0.0, -ground, 0.0])
    feet = {k: v + shift for k, v in feet.items()}
    return Skeleton(joints=j + shift, torso_frame=rt, head_frame=rh, feet=feet, shape=shape,
                    pose=pose)


@dataclass(frozen=True)
class View:
    """Orthographic camera: ``scale`` pixels per height unit, local origin at image (x0, y0)."""

    yaw: float
    scale: float
    x0: float
    y0: float

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image coordinates (…×2, 0-based pixel centres) and depth (towards camera) of points."""
        p = np.asarray(points, dtype=np.float64)
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        m = np.array([[self.scale * c, -s], [0.0, 0.0], [self.scale * s, c]])
        out = p @ m  # (..., 2): scaled x and depth
        xy = np.empty(p.shape[:-1] + (2,))
        xy[..., 0] = self.x0 + out[..., 0]
        xy[..., 1] = self.y0 - self.scale * p[..., 1]
        return xy, out[..., 1]

    def facing(self, frame: np.ndarray) -> float:
        """How much a frame's forward axis points at the camera (1 front, -1 back)."""
        fwd = frame[:, 2]
        return float(-np.sin(self.yaw) * fwd[0] + np.cos(self.yaw) * fwd[2])


# ----------------------------------------------------------------------------- pose sampling


def _walk(rng: np.random.Generator, phase: float | None = None, amp: float | None = None) -> dict:
    """Walking: legs swing in antiphase, arms swing against the legs."""
    ph = rng.uniform(0, 2 * np.pi) if phase is None else phase
    a = rng.uniform(0.25, 0.45) if amp is None else amp
    s = np.sin(ph)
    knee = lambda p: 0.08 + 0.55 * max(0.0, np.sin(p + 1.2))
    return dict(
        lean=rng.uniform(0.0, 0.08),
        r_leg=Limb(flex=a * s, abd=0.04, bend=knee(ph)),
        l_leg=Limb(flex=-a * s, abd=0.04, bend=knee(ph + np.pi)),
        r_arm=Limb(flex=-0.8 * a * s, abd=0.1, bend=rng.uniform(0.15, 0.5)),
        l_arm=Limb(flex=0.8 * a * s, abd=0.1, bend=rng.uniform(0.15, 0.5)),
    )


def _arm(rng: np.random.Generator, kind: str) -> Limb:
    """One arm in a named posture, with random variation."""
    u = rng.uniform
    if kind == "hang":
        return Limb(flex=u(-0.2, 0.3), abd=u(0.05, 0.3), bend=u(0.0, 0.5))
    if kind == "raise":  # overhead or sideways up
        return Limb(flex=u(0.0, 1.2), abd=u(1.6, 2.8), bend=u(0.0, 0.9))
    if kind == "forward":  # reaching forward / pointing
        return Limb(flex=u(0.9, 1.8), abd=u(0.0, 0.5), bend=u(0.0, 0.6))
    if kind == "side":  # arm out to the side
        return Limb(flex=u(-0.2, 0.4), abd=u(0.9, 1.7), bend=u(0.0, 1.2))
    if kind == "across":  # forearm in front of the torso (self-occlusion)
        return Limb(flex=u(0.2, 0.7), abd=u(-0.1, 0.25), bend=u(1.2, 1.9), twist=u(0.6, 1.2))
    if kind == "phone":  # hand to the head
        return Limb(flex=u(0.3, 0.8), abd=u(0.2, 0.6), bend=u(2.0, 2.5), twist=u(0.3, 0.7))
    raise ValueError(kind)


_ARM_KINDS = ("hang", "raise", "forward", "side", "across", "phone")


def sample_pose(rng: np.random.Generator, style: str, yaw: float) -> Pose:
    """A random plausible pose of a style (walk, stand, raise, bend, squat, reach, mixed)."""
    if style == "mixed":
        style = str(rng.choice(["walk", "stand", "raise", "bend", "squat", "reach"],
                               p=[0.25, 0.25, 0.2, 0.1, 0.08, 0.12]))
    u = rng.uniform
    kw: dict = dict(lean=u(-0.03, 0.08), tilt=u(-0.06, 0.06), nod=u(-0.1, 0.2))
    if style == "walk":
        kw.update(_walk(rng))
    elif style == "stand":
        arms = rng.choice(_ARM_KINDS, size=2, p=[0.55, 0.03, 0.05, 0.07, 0.2, 0.1])
        kw.update(r_arm=_arm(rng, arms[0]), l_arm=_arm(rng, arms[1]),
                  r_leg=Limb(flex=u(-0.15, 0.15), abd=u(0.0, 0.2), bend=u(0.0, 0.2)),
                  l_leg=Limb(flex=u(-0.15, 0.15), abd=u(0.0, 0.2), bend=u(0.0, 0.2)))
    elif style in ("raise", "reach"):
        main = "raise" if style == "raise" else "forward"
        other = main if rng.random() < 0.4 else str(rng.choice(_ARM_KINDS))
        arms = [_arm(rng, main), _arm(rng, other)]
        if rng.random() < 0.5:
            arms.reverse()
        base = _walk(rng, amp=u(0.0, 0.3)) if rng.random() < 0.4 else {}
        kw.update(base)
        kw.update(r_arm=arms[0], l_arm=arms[1])
    elif style == "bend":
        kw.update(lean=u(0.5, 1.2), nod=u(-0.4, 0.0),
                  r_arm=Limb(flex=u(0.3, 1.2), abd=u(0.0, 0.4), bend=u(0.0, 0.8)),
                  l_arm=Limb(flex=u(0.3, 1.2), abd=u(0.0, 0.4), bend=u(0.0, 0.8)),
                  r_leg=Limb(flex=u(-0.3, 0.2), abd=u(0.0, 0.2), bend=u(0.0, 0.4)),
                  l_leg=Limb(flex=u(-0.3, 0.2), abd=u(0.0, 0.2), bend=u(0.0, 0.4)))
    elif style == "squat":
        fl, bd = u(0.8, 1.6), u(1.3, 2.3)
        kw.update(lean=u(0.2, 0.6), r_arm=_arm(rng, "forward"), l_arm=_arm(rng, "hang"),
                  r_leg=Limb(flex=fl, abd=u(0.1, 0.4), bend=bd),
                  l_leg=Limb(flex=fl + u(-0.3, 0.3), abd=u(0.1, 0.4), bend=bd + u(-0.3, 0.2)))
    else:
        raise ValueError(f"unknown pose style {style!r}")
    return Pose(yaw=yaw, **kw).clipped()


def walking_pose(rng: np.random.Generator, yaw: float, phase: float, stride: float,
                 stoop: float = 0.0) -> Pose:
    """A walking pose at gait ``phase`` (used for tracklets), leaning forward by ``stoop``."""
    kw = _walk(rng, phase=phase, amp=stride)
    kw["lean"] = kw["lean"] + stoop
    if rng.random() < 0.15:  # e.g. a phone or a hand in front of the body
        kw["r_arm" if rng.random() < 0.5 else "l_arm"] = _arm(rng, str(rng.choice(
            ["across", "phone", "hang"])))
    return Pose(yaw=yaw, nod=rng.uniform(-0.05, 0.15) + stoop, tilt=rng.uniform(-0.04, 0.04),
                **kw).clipped()
