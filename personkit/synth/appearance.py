"""Identities: a persistent appearance per person, and the Market attributes derived from it.

An :class:`Identity` fixes body shape, skin, hair, garments (type, colour from the Market colour
vocabularies, simple texture) and accessories. :func:`sample_identity` draws one with the
correlations of real pedestrians: women more often have long hair, skirts, dresses and handbags
and a narrower, wider-hipped build; children have a big head and backpacks; old people grey
hair, a stoop, darker clothes and hats. :meth:`Identity.market_attributes` derives the 27
``market_attribute.mat`` fields from the appearance.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from personkit.data.constants import MARKET_ATTRIBUTES
from personkit.synth.body import BodyShape, make_shape

RGB = tuple[float, float, float]

UP_COLOURS: tuple[str, ...] = MARKET_ATTRIBUTES["upcolor"]
DOWN_COLOURS: tuple[str, ...] = MARKET_ATTRIBUTES["downcolor"]
#: Colour names -> (hue degrees, saturation range, value range) for HSV sampling.
_HSV: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "black": ((0, 360), (0.0, 0.2), (0.05, 0.18)),
    "white": ((0, 360), (0.0, 0.07), (0.86, 0.98)),
    "gray": ((0, 360), (0.0, 0.08), (0.38, 0.6)),
    "red": ((-10, 6), (0.65, 0.95), (0.55, 0.9)),
    "pink": ((325, 350), (0.28, 0.5), (0.86, 1.0)),
    "purple": ((268, 295), (0.45, 0.8), (0.38, 0.7)),
    "yellow": ((48, 58), (0.65, 0.95), (0.84, 0.99)),
    "blue": ((200, 232), (0.45, 0.9), (0.38, 0.85)),
    "green": ((95, 150), (0.5, 0.9), (0.35, 0.7)),
    "brown": ((20, 34), (0.45, 0.8), (0.28, 0.48)),
    # Off-vocabulary colours: identities wearing these have no colour labelled.
    "orange": ((24, 32), (0.85, 1.0), (0.9, 1.0)),
    "beige": ((35, 45), (0.2, 0.32), (0.72, 0.82)),
    "teal": ((172, 185), (0.6, 0.85), (0.45, 0.65)),
}
_UP_P = dict(black=.16, white=.16, red=.11, purple=.08, yellow=.09, gray=.13, blue=.15,
             green=.12)
_DOWN_P = dict(black=.22, white=.08, pink=.07, purple=.06, yellow=.05, gray=.14, blue=.18,
               green=.08, brown=.12)
_OTHER = ("orange", "beige", "teal")
_SKIN_LIGHT, _SKIN_DARK = np.array([238, 200, 172.0]), np.array([118, 78, 55.0])
_HAIR = {"black": (28, 24, 24), "brown": (72, 46, 30), "blond": (196, 164, 104),
         "grey": (150, 148, 146), "white": (214, 212, 206)}


def colour(name: str, rng: np.random.Generator) -> RGB:
    """A random RGB (0-255) shade of a named colour."""
    (h0, h1), (s0, s1), (v0, v1) = _HSV[name]
    h = (rng.uniform(h0, h1) % 360) / 360
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(s0, s1), rng.uniform(v0, v1))
    return (255 * r, 255 * g, 255 * b)


@dataclass(frozen=True)
class Texture:
    """A garment paint: main colour ``c1`` covering at least ``duty`` of the area, ``c2`` the
    rest in stripes/checks, or ``c1`` modulated by noise. ``period`` is in height units."""

    kind: str  # plain | hstripes | vstripes | checks | noise
    c1: RGB
    c2: RGB
    period: float
    duty: float
    seed: int


@dataclass(frozen=True)
class Identity:
    """The persistent appearance of one person."""

    pid: int
    female: bool
    age: int  # 0 young, 1 teenager, 2 adult, 3 old
    shape: BodyShape
    stoop: float
    skin: RGB
    hair_long: bool
    hair_front: bool  # long hair falling over the shoulders in front
    hair: RGB
    top_kind: str  # shirt | coat | dress | jumpsuit
    long_sleeves: bool
    sleeve_len: float  # fraction of the upper arm a short sleeve covers
    top: Texture
    top_detail: str  # none | band (a chest band) | logo (a print on the front)
    detail: RGB  # colour of the band or logo
    up_name: str | None  # Market upper colour, None if not in the vocabulary
    lower_kind: str  # pants | shorts | skirt | dress | jumpsuit
    lower_long: bool
    lower_len: float  # shorts: fraction of the thigh; skirts: length below the hips
    lower: Texture
    down_name: str | None
    shoes: RGB
    socks: RGB | None
    hat: RGB | None
    sunglasses: bool
    gloves: RGB | None
    scarf: RGB | None
    backpack: RGB | None
    bag: RGB | None
    handbag: RGB | None
    bag_side: float  # +1 left, -1 right (the side the shoulder bag hangs)
    hand_side: float  # the hand holding the handbag

    def market_attributes(self) -> dict[str, int]:
        """The 27 ``market_attribute.mat`` fields (1 = no/first option, 2 = yes/second)."""
        yn = lambda b: 2 if b else 1
        out = {
            "gender": yn(self.female), "age": self.age + 1, "hair": yn(self.hair_long),
            "up": yn(not self.long_sleeves), "down": yn(not self.lower_long),
            "clothes": 1 if self.lower_kind in ("skirt", "dress") else 2,
            "hat": yn(self.hat is not None), "backpack": yn(self.backpack is not None),
            "bag": yn(self.bag is not None), "handbag": yn(self.handbag is not None),
        }
        out.update({"up" + c: yn(c == self.up_name) for c in UP_COLOURS})
        out.update({"down" + c: yn(c == self.down_name) for c in DOWN_COLOURS})
        return out


def _pick(rng: np.random.Generator, probs: dict[str, float]) -> str:
    names = list(probs)
    p = np.array([probs[n] for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _texture(rng: np.random.Generator, c1: RGB, upper: bool) -> Texture:
    probs = (dict(plain=.62, hstripes=.12, vstripes=.05, checks=.08, noise=.13) if upper
             else dict(plain=.75, noise=.15, checks=.04, vstripes=.06))
    kind = _pick(rng, probs)
    v = np.array(c1)
    r = rng.random()
    if r < 0.3:  # contrasting white or black accents
        c2 = (235.0, 235.0, 235.0) if v.mean() < 120 else (25.0, 25.0, 25.0)
    elif r < 0.45:  # another colour
        c2 = colour(str(rng.choice(list(_HSV))), rng)
    else:  # a lighter or darker shade
        f = rng.choice([0.55, 1.45])
        c2 = tuple(float(x) for x in np.clip(v * f + (25 if f > 1 else 0), 0, 255))
    return Texture(kind, c1, c2, period=float(rng.uniform(0.035, 0.07)),
                   duty=float(rng.uniform(0.65, 0.8)), seed=int(rng.integers(1 << 30)))


def _garment_colour(rng: np.random.Generator, probs: dict[str, float], age: int,
                    other_p: float) -> str | None:
    """A vocabulary colour name, or None (an off-vocabulary colour) with prob ``other_p``."""
    if rng.random() < other_p:
        return None
    p = dict(probs)
    if age == 3:  # old people: darker clothes
        for k in ("black", "gray", "brown", "blue"):
            if k in p:
                p[k] *= 2.0
    elif age == 0:  # children: bright colours
        for k in ("red", "yellow", "green", "pink", "blue"):
            if k in p:
                p[k] *= 2.0
    return _pick(rng, p)


def _clothing(rng: np.random.Generator, female: bool, age: int) -> dict:
    """Garment types, lengths and colour names."""
    r = rng.random
    top_kind = "coat" if r() < (0.1, 0.1, 0.25, 0.35)[age] else "shirt"
    if female:
        lower_kind = _pick(rng, dict(pants=.4, shorts=.12, skirt=.3, dress=.18))
    else:
        lower_kind = _pick(rng, dict(pants=.7, shorts=.3))
    if r() < 0.02:
        top_kind = lower_kind = "jumpsuit"
    if lower_kind == "dress":
        top_kind = "dress"
    long_sleeves = top_kind == "coat" or r() < (0.4, 0.4, 0.5, 0.7)[age]
    lower_long = {"pants": True, "jumpsuit": True, "shorts": False}.get(lower_kind, r() < 0.42)
    up = _garment_colour(rng, _UP_P, age, 0.05)
    down = _garment_colour(rng, _DOWN_P, age, 0.04)
    if top_kind in ("dress", "jumpsuit"):  # one garment: one colour for both labels
        down = _garment_colour(rng, {k: v for k, v in _DOWN_P.items() if k != "brown"}, age,
                               0.04)
        up = down if down in UP_COLOURS else None
    return dict(top_kind=top_kind, lower_kind=lower_kind, long_sleeves=bool(long_sleeves),
                lower_long=bool(lower_long), up_name=up, down_name=down)


def _accessories(rng: np.random.Generator, female: bool, age: int, coat: bool) -> dict:
    r = rng.random
    acc_colour = lambda: colour(_pick(rng, dict(black=.3, brown=.18, gray=.1, red=.1, blue=.1,
                                                 beige=.08, green=.06, yellow=.04, purple=.04)),
                                rng)
    return dict(
        hat=colour(_pick(rng, dict(black=.3, white=.2, red=.15, blue=.15, beige=.2)), rng)
        if r() < (0.05, 0.03, 0.04, 0.2)[age] else None,
        sunglasses=bool(age in (1, 2) and r() < 0.06),
        gloves=colour("black", rng) if coat and r() < 0.12 else None,
        scarf=colour(_pick(rng, dict(red=.3, gray=.3, beige=.2, blue=.2)), rng)
        if coat and r() < 0.2 else None,
        backpack=acc_colour() if r() < (0.5, 0.35, 0.15, 0.05)[age] else None,
        bag=acc_colour() if r() < (0.25 if female else 0.14) else None,
        handbag=acc_colour() if r() < (0.18 if female else 0.03) else None,
        bag_side=float(rng.choice([-1.0, 1.0])), hand_side=float(rng.choice([-1.0, 1.0])),
    )


def sample_identity(rng: np.random.Generator, pid: int) -> Identity:
    """A random identity with correlated gender/age cues."""
    female = bool(rng.random() < 0.42)
    age = int(rng.choice(4, p=[0.06, 0.56, 0.3, 0.08]))
    build = rng.uniform(0.88, 1.0) if age == 1 else rng.uniform(0.92, 1.15)
    shape = make_shape(female, age, float(build), rng)
    if age == 3:
        hair_name = _pick(rng, dict(grey=.5, white=.3, black=.2))
    else:
        hair_name = _pick(rng, dict(black=.62, brown=.3, blond=.08))
    hair_long = bool(rng.random() < ((0.82 if age < 3 else 0.45) if female else 0.05))
    skin_t = rng.beta(2.0, 4.0)
    skin = tuple(float(x) for x in (1 - skin_t) * _SKIN_LIGHT + skin_t * _SKIN_DARK)
    cl = _clothing(rng, female, age)
    top_c = colour(cl["up_name"] or str(rng.choice(_OTHER)), rng)
    if cl["top_kind"] in ("dress", "jumpsuit"):
        low_c = top_c = colour(cl["down_name"] or str(rng.choice(_OTHER)), rng)
    else:
        low_c = colour(cl["down_name"] or str(rng.choice(_OTHER)), rng)
    top = _texture(rng, top_c, upper=True)
    lower = top if cl["top_kind"] in ("dress", "jumpsuit") else _texture(rng, low_c, False)
    exposed = cl["lower_kind"] in ("shorts", "skirt", "dress") and not cl["lower_long"]
    shoes = colour(_pick(rng, dict(black=.3, white=.3, brown=.12, gray=.1, red=.06, blue=.06,
                                   green=.03, yellow=.03)), rng)
    detail = "none" if cl["top_kind"] in ("dress", "jumpsuit") else _pick(
        rng, dict(none=.76, band=.12, logo=.12))
    return Identity(
        pid=pid, female=female, age=age, shape=shape,
        stoop=float(rng.uniform(0.12, 0.3)) if age == 3 else 0.0, skin=skin,
        hair_long=hair_long, hair_front=bool(hair_long and rng.random() < 0.5),
        hair=tuple(float(x) for x in _HAIR[hair_name]), top=top,
        top_detail=detail, detail=colour(str(rng.choice(list(_HSV))), rng),
        lower=lower, sleeve_len=float(rng.uniform(0.3, 0.55)),
        lower_len=float(rng.uniform(0.5, 0.8)) if cl["lower_kind"] == "shorts"
        else float(rng.uniform(0.17, 0.24) if not cl["lower_long"] else rng.uniform(0.33, 0.4)),
        shoes=shoes, socks=colour(_pick(rng, dict(white=.6, black=.3, gray=.1)), rng)
        if exposed and rng.random() < 0.3 else None,
        **cl, **_accessories(rng, female, age, cl["top_kind"] == "coat"),
    )


def identity_rng_key(seed: int, pid: int) -> list[int]:
    """The RNG key of an identity's appearance (independent of where it is rendered)."""
    return [seed, 100, pid]


def get_identity(seed: int, pid: int) -> Identity:
    """The identity ``pid`` of the world with ``seed``."""
    return sample_identity(np.random.default_rng(identity_rng_key(seed, pid)), pid)
