"""Dataset bias you can dial: one strength ``bias`` in [0, 1] moves each synthetic dataset's
look from today's world (0: byte-identical files) towards the documented look of the real set
it stands in for (1):

* **Market-1501** (Zheng et al., ICCV 2015): six surveillance cameras in front of a campus
  supermarket, five 1280×1080 and one 720×576, pedestrians cut out by the DPM detector and
  resized to 128×64. Small people seen at low resolution, so crops are upscaled and soft;
  strong per-camera colour casts, washed-out colours and low contrast; CCTV noise and JPEG;
  loose, misaligned detector boxes.
* **MPII Human Pose** (Andriluka et al., CVPR 2014): frames of YouTube videos of 410 everyday
  activities, many of them sports. Sharp HD frames with motion blur, warm indoor light and
  vivid colours, video compression; people small in wide shots; more side and back views;
  gyms, sports fields, rooms and stages.
* **LIP** (Gong et al., CVPR 2017): single-person crops of MS-COCO web photos. Low resolution
  (crops of small instances), vivid and varied colour, vignetting, heavy JPEG; tight framing
  with many half-body and cut-off crops; mostly frontal; parties, streets, studios, beaches.

:func:`looks_at` interpolates every knob linearly between today's value and the full-bias
value; random draws for the effects that today's world does not have (saturation, motion
blur, vignetting, low resolution, a background family swap) come from a generator of their
own (:func:`bias_rng`), so the main stream of every item, and with it everything at bias 0,
is unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from personkit.synth.scenes import LIP_DOMAIN, MARKET_CAMERAS, MPII_DOMAIN, Domain, Effects

#: Dataset code of the bias generator in RNG keys (items use 1-5, MOT 31).
K_BIAS = 41


@dataclass(frozen=True)
class Look:
    """One dataset's look beyond its camera :class:`Domain`: effects, framing, viewpoints.

    Ranges are (low, high) of a uniform draw per image; 1.0 or 0.0 means "as today".
    """

    saturation: tuple[float, float] = (1.0, 1.0)  # colour saturation factor
    motion_blur: tuple[float, float] = (0.0, 0.0)  # linear motion blur length (pixels)
    vignette: float = 0.0  # darkening at the corners (fraction)
    lowres: tuple[float, float] = (1.0, 1.0)  # resolution before upscaling (fraction)
    styles: tuple[str, ...] = ()  # background families taking over, with probability `swap`
    swap: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)  # person size factor in the frame
    jitter: float = 1.0  # box misalignment factor (Market)
    views: tuple[float, float, float] | None = None  # P(front, back, side) (MPII, LIP)
    half_body: float | None = None  # P(half-body crop) (LIP)


#: Each dataset's camera model at full bias (Market: one per camera).
STRONG_MARKET: tuple[Domain, ...] = tuple(
    replace(d, cast=cast, cast_jitter=0.03, contrast=(0.74, 0.86), noise=5.5, jpeg=(68, 80),
            blur=(0.8, 1.2), render_scale=scale)
    for d, cast, scale in zip(MARKET_CAMERAS, (
        (1.08, 1.02, 0.86), (0.88, 0.98, 1.14), (0.94, 1.09, 0.93), (1.12, 1.0, 0.8),
        (0.92, 0.97, 1.12), (1.04, 1.04, 0.94)), (
        (0.5, 0.7), (0.45, 0.62), (0.5, 0.68), (0.42, 0.58), (0.5, 0.7), (0.36, 0.5)),
        strict=True))
STRONG_MPII = replace(MPII_DOMAIN, gain=(0.8, 1.3), contrast=(1.05, 1.3),
                      cast=(1.07, 1.0, 0.9), cast_jitter=0.1, blur=(0.0, 0.4), noise=1.5,
                      jpeg=(58, 78))
STRONG_LIP = replace(LIP_DOMAIN, gain=(0.95, 1.3), contrast=(1.0, 1.35), cast=(1.0, 1.0, 1.0),
                     cast_jitter=0.16, blur=(0.2, 0.6), noise=3.0, jpeg=(42, 66))

#: Today's framing of the scene sets (items.py draws with these when there is no bias).
TODAY_VIEWS = {"mpii": (0.45, 0.25, 0.3), "lip": (0.5, 0.2, 0.3)}
TODAY_HALF_BODY = 0.15
TODAY = Look()
STRONG_LOOKS: dict[str, Look] = {
    "market": Look(saturation=(0.55, 0.75), jitter=2.0),
    "mpii": Look(saturation=(1.1, 1.35), motion_blur=(2.0, 7.0), styles=(
        "gym", "field", "room", "stage"), swap=0.8, scale=(0.55, 0.8), views=(0.3, 0.3, 0.4)),
    "lip": Look(saturation=(1.2, 1.55), vignette=0.35, lowres=(0.35, 0.7), styles=(
        "party", "street", "studio", "beach"), swap=0.8, scale=(0.6, 0.85),
        views=(0.72, 0.1, 0.18), half_body=0.4),
}


def _lerp(a: Any, b: Any, t: float) -> Any:
    """``t`` of the way from ``a`` to ``b``: numbers, or tuples of them (integers stay
    integers)."""
    if isinstance(a, tuple):
        return tuple(_lerp(x, y, t) for x, y in zip(a, b, strict=True))
    value = a + t * (b - a)
    return int(round(value)) if isinstance(a, int) and isinstance(b, int) else value


def lerp_domain(today: Domain, strong: Domain, t: float) -> Domain:
    """A camera model ``t`` of the way from ``today`` to ``strong`` (``today`` at t = 0)."""
    if t == 0:
        return today
    return Domain(**{f.name: _lerp(getattr(today, f.name), getattr(strong, f.name), t)
                     if f.name not in ("name", "styles") else getattr(today, f.name)
                     for f in fields(Domain)})


@dataclass(frozen=True)
class DatasetLook:
    """Everything that decides one dataset's look at one bias."""

    domains: tuple[Domain, ...]  # Market: one per camera; MPII, LIP: one
    look: Look

    @property
    def domain(self) -> Domain:
        return self.domains[0]


def looks_at(bias: float) -> dict[str, DatasetLook]:
    """The three datasets' looks at ``bias`` (0 = today's world, 1 = full bias)."""
    if not 0.0 <= bias <= 1.0:
        raise ValueError(f"synth bias must be in [0, 1], got {bias}")
    t = float(bias)

    def look(name: str) -> Look:
        s = STRONG_LOOKS[name]
        return Look(saturation=_lerp(TODAY.saturation, s.saturation, t),
                    motion_blur=_lerp(TODAY.motion_blur, s.motion_blur, t),
                    vignette=_lerp(TODAY.vignette, s.vignette, t),
                    lowres=_lerp(TODAY.lowres, s.lowres, t), styles=s.styles,
                    swap=s.swap * t, scale=_lerp(TODAY.scale, s.scale, t),
                    jitter=_lerp(TODAY.jitter, s.jitter, t),
                    views=_lerp(TODAY_VIEWS[name], s.views, t) if s.views else None,
                    half_body=_lerp(TODAY_HALF_BODY, s.half_body, t) if s.half_body else None)

    return {
        "market": DatasetLook(tuple(lerp_domain(a, b, t) for a, b in zip(
            MARKET_CAMERAS, STRONG_MARKET, strict=True)), look("market")),
        "mpii": DatasetLook((lerp_domain(MPII_DOMAIN, STRONG_MPII, t),), look("mpii")),
        "lip": DatasetLook((lerp_domain(LIP_DOMAIN, STRONG_LIP, t),), look("lip")),
    }


def manifest(bias: float) -> dict[str, Any]:
    """Every knob of the three looks at ``bias``, for the world's marker file."""
    return {name: asdict(dl) for name, dl in looks_at(bias).items()}


def bias_rng(seed: int, code: int, index: int) -> np.random.Generator:
    """The generator of an item's bias effects, apart from its main stream."""
    return np.random.default_rng([seed, K_BIAS, code, index])


def draw_effects(look: Look, rng: np.random.Generator) -> Effects:
    """One image's effects drawn from ``look`` (always the same number of draws)."""
    u = rng.random(5)
    pick = lambda r, x: r[0] + x * (r[1] - r[0])
    return Effects(pick(look.saturation, u[0]), pick(look.motion_blur, u[1]),
                   float(np.pi * u[2]), look.vignette * (0.6 + 0.4 * u[3]),
                   pick(look.lowres, u[4]))
