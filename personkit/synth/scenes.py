"""Cameras, backgrounds and dataset bias.

A :class:`Domain` is one source of images (a Market camera, the MPII-like or the LIP-like
collection) with its own background style, lighting (gain, contrast, colour cast), blur, sensor
noise, JPEG quality and, for Market crops, the resolution at which people are seen before the
crop is resized to 128×64. Domains differ on purpose, so that per-dataset (and per-camera)
image statistics differ as they do between the real datasets.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class Domain:
    """Background style and camera model of one image source."""

    name: str
    styles: tuple[str, ...]  # background styles to draw from
    gain: tuple[float, float]
    contrast: tuple[float, float]
    cast: tuple[float, float, float]  # RGB multipliers
    cast_jitter: float
    blur: tuple[float, float]  # Gaussian sigma (output pixels)
    noise: float  # Gaussian noise sigma (0-255 scale)
    jpeg: tuple[int, int]  # quality range
    render_scale: tuple[float, float] = (1.0, 1.0)  # Market: capture resolution / 128×64


MARKET_CAMERAS: tuple[Domain, ...] = (
    Domain("c1", ("plaza",), (1.0, 1.08), (0.95, 1.05), (1.02, 1.0, 0.97), 0.02, (0.5, 0.8),
           2.0, (88, 94), (0.8, 1.0)),
    Domain("c2", ("road",), (0.9, 0.98), (0.92, 1.0), (0.97, 1.0, 1.04), 0.02, (0.6, 0.9), 3.0,
           (84, 90), (0.65, 0.82)),
    Domain("c3", ("building",), (1.02, 1.1), (0.85, 0.93), (1.03, 1.02, 0.97), 0.02,
           (0.4, 0.7), 2.0, (90, 95), (0.72, 0.95)),
    Domain("c4", ("trees",), (0.82, 0.9), (0.98, 1.08), (0.98, 1.03, 0.98), 0.02, (0.7, 1.0),
           3.5, (80, 88), (0.6, 0.75)),
    Domain("c5", ("shop",), (0.95, 1.03), (1.0, 1.08), (1.0, 1.0, 1.0), 0.02, (0.5, 0.8), 2.5,
           (86, 92), (0.75, 1.0)),
    Domain("c6", ("park",), (0.92, 1.0), (1.02, 1.12), (1.0, 0.98, 1.02), 0.02, (0.6, 0.9),
           3.0, (82, 90), (0.62, 0.85)),
)
MPII_DOMAIN = Domain("mpii", ("room", "plaza", "park", "shop", "trees", "building"),
                     (0.85, 1.2), (0.9, 1.15), (1.0, 1.0, 1.0), 0.07, (0.3, 0.8), 2.5, (85, 95))
LIP_DOMAIN = Domain("lip", ("room", "shop", "street", "room", "building"), (0.75, 1.15),
                    (0.85, 1.3), (1.02, 1.0, 0.98), 0.1, (0.4, 1.1), 4.0, (68, 84))

# Style -> (upper colour, lower colour, horizon range as a fraction of the height).
_STYLES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], tuple[float, float]]] = {
    "plaza": ((150, 120, 105), (165, 160, 150), (0.35, 0.55)),
    "road": ((90, 120, 80), (75, 75, 80), (0.3, 0.5)),
    "building": ((190, 185, 170), (140, 135, 130), (0.5, 0.7)),
    "trees": ((60, 95, 55), (120, 110, 95), (0.35, 0.55)),
    "shop": ((170, 150, 120), (185, 180, 175), (0.45, 0.65)),
    "park": ((110, 150, 200), (85, 130, 70), (0.25, 0.45)),
    "room": ((200, 190, 175), (130, 100, 80), (0.5, 0.75)),
    "street": ((150, 150, 160), (95, 95, 100), (0.4, 0.6)),
    # families of the biased MPII-like (videos: sports, stages) and LIP-like (web photos) sets
    "gym": ((196, 178, 140), (178, 128, 72), (0.45, 0.6)),
    "field": ((120, 165, 215), (62, 138, 58), (0.2, 0.35)),
    "stage": ((35, 30, 45), (120, 80, 60), (0.55, 0.75)),
    "party": ((95, 70, 62), (128, 92, 70), (0.5, 0.7)),
    "studio": ((226, 224, 220), (212, 210, 206), (0.6, 0.8)),
    "beach": ((150, 195, 235), (222, 204, 160), (0.35, 0.5)),
}


def _jitter(rgb, rng: np.random.Generator, amount: float) -> np.ndarray:
    return np.clip(np.array(rgb, np.float32) * rng.uniform(1 - amount, 1 + amount, 3), 0, 255)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int, amp: float) -> np.ndarray:
    """Low-frequency noise (H×W×1) with values around 1 ± amp."""
    small = rng.normal(0, 1, (max(2, h // cell), max(2, w // cell), 1)).astype(np.float32)
    return (1 + amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))[..., None]


def _clutter(img: np.ndarray, rng: np.random.Generator, n: int, horizon: int,
             style: str) -> None:
    """Draw ``n`` background objects (windows, poles, bins, bushes, furniture)."""
    h, w = img.shape[:2]
    for _ in range(n):
        kind = rng.choice(["rect", "pole", "blob", "window"])
        col = tuple(float(c) for c in rng.uniform(40, 210, 3) * rng.uniform(0.6, 1.0))
        if style == "trees" or (style == "park" and rng.random() < 0.5):
            kind, col = "blob", tuple(float(c) for c in _jitter((60, 110, 50), rng, 0.3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, max(1, horizon + h // 6)))
        s = int(rng.integers(h // 12 + 2, h // 4 + 3))
        if kind == "rect":
            cv2.rectangle(img, (x, y), (x + s, y + int(s * rng.uniform(0.5, 1.5))), col, -1)
        elif kind == "pole":
            cv2.rectangle(img, (x, 0), (x + max(2, s // 8), horizon + s), col, -1)
        elif kind == "blob":
            cv2.ellipse(img, (x, y), (s, int(s * 0.7)), 0, 0, 360, col, -1)
        else:
            for k in range(3):
                cv2.rectangle(img, (x + k * s, y), (x + k * s + s // 2, y + s // 2), col, -1)


def _ground_lines(img: np.ndarray, rng: np.random.Generator, horizon: int) -> None:
    """Paving/floor joints below the horizon."""
    h, w = img.shape[:2]
    col = tuple(float(c) for c in img[min(h - 1, horizon + 2), w // 2] * 0.85)
    step = int(rng.integers(10, 22))
    for y in range(horizon + step, h, step):
        cv2.line(img, (0, y), (w, y), col, 1)
        step = int(step * 1.12) + 1
    cx = int(rng.integers(0, w))
    for k in range(-6, 7):
        cv2.line(img, (cx + k * w // 10, horizon), (cx + k * w // 3, h), col, 1)


def background(style: str, h: int, w: int, rng: np.random.Generator,
               clutter: tuple[int, int] = (3, 8)) -> np.ndarray:
    """A random H×W×3 float32 RGB background of a style."""
    top, bottom, (h0, h1) = _STYLES[style]
    horizon = int(h * rng.uniform(h0, h1))
    img = np.empty((h, w, 3), np.float32)
    img[:horizon] = _jitter(top, rng, 0.15)
    img[horizon:] = _jitter(bottom, rng, 0.15)
    _clutter(img, rng, int(rng.integers(*clutter)), horizon, style)
    _ground_lines(img, rng, horizon)
    img *= _smooth_noise(rng, h, w, 24, 0.12)
    img += 4 * noise_patch(rng, h, w)
    return np.clip(img, 0, 255)


@lru_cache(maxsize=1)
def _noise_tile() -> np.ndarray:
    """A fixed 512×512×3 tile of standard normal noise (the same in every process)."""
    tile = np.random.default_rng(20190910).standard_normal((512, 512, 3), dtype=np.float32)
    tile.setflags(write=False)
    return tile


def noise_patch(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """H×W×3 standard normal noise: a random window of the fixed tile (cheap)."""
    tile = _noise_tile()
    if h > tile.shape[0] or w > tile.shape[1]:
        return rng.standard_normal((h, w, 3), dtype=np.float32)
    y, x = int(rng.integers(0, tile.shape[0] - h + 1)), int(rng.integers(0, tile.shape[1] - w + 1))
    return tile[y:y + h, x:x + w]


@lru_cache(maxsize=8)
def camera_panorama(seed: int, cam: int) -> np.ndarray:
    """The static scene of Market camera ``cam`` (1-6): crops come from random windows."""
    rng = np.random.default_rng([seed, 7, cam])
    pano = background(MARKET_CAMERAS[cam - 1].styles[0], 256, 768, rng, clutter=(12, 20))
    pano.setflags(write=False)
    return pano


def market_background(seed: int, cam: int, h: int, w: int,
                      rng: np.random.Generator) -> np.ndarray:
    """A background for a Market crop of camera ``cam``, rendered at H×W."""
    pano = camera_panorama(seed, cam)
    ph, pw = pano.shape[:2]
    wh = int(rng.integers(110, 150))
    ww = wh // 2
    y, x = int(rng.integers(0, ph - wh)), int(rng.integers(0, pw - ww))
    return cv2.resize(pano[y:y + wh, x:x + ww], (w, h), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Effects:
    """Bias effects of one image (personkit.synth.bias): none of them at their defaults."""

    saturation: float = 1.0
    motion: float = 0.0  # linear motion blur length in pixels
    angle: float = 0.0  # its direction (radians)
    vignette: float = 0.0  # darkening at the corners (fraction)
    lowres: float = 1.0  # resolution before upscaling (fraction)


def apply_effects(x: np.ndarray, fx: Effects) -> np.ndarray:
    """Low resolution, motion blur, saturation and vignetting on a float32 RGB image."""
    h, w = x.shape[:2]
    if fx.lowres < 0.999:
        small = (max(8, round(w * fx.lowres)), max(8, round(h * fx.lowres)))
        x = cv2.resize(cv2.resize(x, small, interpolation=cv2.INTER_AREA), (w, h),
                       interpolation=cv2.INTER_LINEAR)
    if fx.motion >= 1.0:
        n = int(np.ceil(fx.motion)) | 1
        kernel = np.zeros((n, n), np.float32)
        c, d = n // 2, fx.motion / 2
        p = (c - d * np.cos(fx.angle), c - d * np.sin(fx.angle))
        q = (c + d * np.cos(fx.angle), c + d * np.sin(fx.angle))
        cv2.line(kernel, (round(p[0]), round(p[1])), (round(q[0]), round(q[1])), 1.0, 1)
        x = cv2.filter2D(x, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
    if fx.saturation != 1.0:
        gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
        x = gray[..., None] + fx.saturation * (x - gray[..., None])
    if fx.vignette > 0:
        yy, xx = np.ogrid[-1:1:h * 1j, -1:1:w * 1j]
        x = x * (1 - fx.vignette * ((xx ** 2 + yy ** 2) / 2)).astype(np.float32)[..., None]
    return x


def apply_camera(img: np.ndarray, dom: Domain, rng: np.random.Generator,
                 size: tuple[int, int] | None = None, effects: Effects | None = None
                 ) -> np.ndarray:
    """Lighting, colour cast, (resize to ``size`` = (H, W)), bias ``effects``, blur and
    noise; uint8 RGB out."""
    x = img.astype(np.float32)
    cast = np.array(dom.cast) * rng.uniform(1 - dom.cast_jitter, 1 + dom.cast_jitter, 3)
    mean = float(x.mean())
    contrast, gain = rng.uniform(*dom.contrast), rng.uniform(*dom.gain)
    h, w = x.shape[:2]
    grad = 1 + np.linspace(-1, 1, w, dtype=np.float32) * rng.uniform(-0.08, 0.08)
    mult = (gain * contrast * grad[None, :, None] * cast[None, None, :]).astype(np.float32)
    x += mean * (1 - contrast) / contrast  # (x - mean) * contrast + mean, then the light
    x *= mult
    if size is not None and size != (h, w):
        x = cv2.resize(x, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    if effects is not None:
        x = apply_effects(x, effects)
    sigma = rng.uniform(*dom.blur)
    if sigma > 0.25:
        x = cv2.GaussianBlur(x, (0, 0), sigma)
    x += dom.noise * noise_patch(rng, x.shape[0], x.shape[1]) + 0.5
    return np.clip(x, 0, 255, out=x).astype(np.uint8)


def jpeg_quality(dom: Domain, rng: np.random.Generator) -> int:
    """A JPEG quality for one image of the domain."""
    return int(rng.integers(dom.jpeg[0], dom.jpeg[1] + 1))
