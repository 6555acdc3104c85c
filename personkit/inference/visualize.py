"""Overlays in the style of Pfeiffer et al. (GCPR 2019), Figs. 1, 6 and 7.

Per person: a semi-transparent part overlay with a fixed palette, the MPII skeleton (right
limbs orange, left limbs green, torso and head yellow), and the box coloured by the predicted
gender, magenta for female and cyan-blue for male as in the paper (white when the model has no
gender attribute), with optional attribute text above it. All drawing is on RGB ``uint8``
arrays; :func:`save_image` writes PNG/JPEG files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from personkit.data.constants import MPII_SKELETON
from personkit.inference.predictor import PersonResult
from personkit.inference.preprocess import to_rgb_uint8

Colour = tuple[int, int, int]
FEMALE: Colour = (255, 0, 255)  # magenta
MALE: Colour = (0, 160, 255)  # cyan-blue
UNKNOWN: Colour = (255, 255, 255)
_RIGHT, _LEFT = {0, 1, 2, 10, 11, 12}, {3, 4, 5, 13, 14, 15}  # MPII joint ids
BONE_COLOURS = {"right": (255, 128, 0), "left": (0, 220, 80), "centre": (255, 230, 0)}
#: The 5 merged classes: background (not drawn), head, upper body, lower body, shoes.
MERGED5_PALETTE = np.array([(0, 0, 0), (255, 60, 60), (60, 200, 60), (60, 90, 255),
                            (255, 210, 0)], dtype=np.uint8)


def voc_palette(n: int) -> np.ndarray:
    """The PASCAL VOC bit-interleaved palette used for LIP visualisations (``n×3`` RGB)."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def part_palette(num_classes: int) -> np.ndarray:
    """Fixed colours: :data:`MERGED5_PALETTE` for 5 classes, the VOC palette otherwise."""
    return MERGED5_PALETTE if num_classes == 5 else voc_palette(max(num_classes, 1))


def gender_colour(result: PersonResult) -> Colour:
    """Box colour from the ``gender`` attribute: magenta female, cyan-blue male."""
    gender = (result.attributes or {}).get("gender")
    if gender is None:
        return UNKNOWN
    return FEMALE if gender.label == "female" else MALE if gender.label == "male" else UNKNOWN


def draw_parts(canvas: np.ndarray, result: PersonResult, alpha: float = 0.5) -> None:
    """Blend the part colours (background excluded) into ``canvas`` in place."""
    if result.parts is None or result.parts_box is None:
        return
    x1, y1, x2, y2 = result.parts_box
    h, w = canvas.shape[:2]
    cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if cx1 >= cx2 or cy1 >= cy2:
        return
    mh, mw = result.parts.shape  # a map sampled coarser than the box's pixels is enlarged
    rows = (np.arange(cy1, cy2) - y1) * mh // (y2 - y1)
    labels = result.parts[np.ix_(rows, (np.arange(cx1, cx2) - x1) * mw // (x2 - x1))]
    colours = part_palette(len(result.part_classes) or int(labels.max()) + 1)
    region = canvas[cy1:cy2, cx1:cx2]
    fg = labels > 0
    blended = (1 - alpha) * region[fg] + alpha * colours[np.minimum(labels[fg], len(colours) - 1)]
    region[fg] = blended.round().astype(np.uint8)


def draw_skeleton(canvas: np.ndarray, keypoints: np.ndarray, min_score: float = 0.1,
                  thickness: int = 2) -> None:
    """Draw MPII bones and joints whose confidence is at least ``min_score``, in place."""
    ok = keypoints[:, 2] >= min_score
    pts = [(int(round(x)), int(round(y))) for x, y in keypoints[:, :2]]
    for a, b in MPII_SKELETON:
        if ok[a] and ok[b]:
            side = "right" if {a, b} <= _RIGHT else "left" if {a, b} <= _LEFT else "centre"
            cv2.line(canvas, pts[a], pts[b], BONE_COLOURS[side], thickness, cv2.LINE_AA)
    for j, p in enumerate(pts):
        if ok[j]:
            cv2.circle(canvas, p, thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)


def attribute_text(result: PersonResult, names: Sequence[str]) -> str:
    """``label`` of each named attribute, e.g. ``"female backpack:yes"``."""
    parts = []
    for name in names:
        a = (result.attributes or {}).get(name)
        if a is not None:
            parts.append(a.label if name == "gender" else f"{name}:{a.label}")
    return " ".join(parts)


def draw_results(image: np.ndarray, results: Sequence[PersonResult], *, parts: bool = True,
                 skeleton: bool = True, boxes: bool = True, text: Sequence[str] = ("gender",),
                 alpha: float = 0.5, min_keypoint_score: float = 0.1,
                 min_height: int = 0) -> np.ndarray:
    """A copy of the RGB ``image`` with every person drawn (parts, then skeleton, then box).

    The image is converted as in :func:`~personkit.inference.predictor.to_rgb_uint8`
    (grayscale becomes 3 channels). An image lower than ``min_height`` (``predict`` asks 256
    for a folder of 128×64 person crops) is enlarged first, by a whole factor, with the
    results scaled to it, so that the overlay can be read.

    Args:
        text: attribute names written above each box (empty: no text).
        alpha: opacity of the part overlay.
        min_keypoint_score: joints below this confidence are not drawn.
    """
    canvas = to_rgb_uint8(image).copy()
    factor = -(-min_height // canvas.shape[0]) if canvas.shape[0] < min_height else 1
    if factor > 1:
        canvas = cv2.resize(canvas, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        results = [scale_result(r, factor) for r in results]
    for r in results if parts else ():
        draw_parts(canvas, r, alpha)
    for r in results:
        x1, y1, x2, y2 = r.box
        thickness = max(1, int(round((y2 - y1) / 80)))
        if skeleton and r.keypoints is not None:
            draw_skeleton(canvas, r.keypoints, min_keypoint_score, thickness)
        if boxes:
            colour = gender_colour(r)
            p1 = (int(round(x1)), int(round(y1)))
            p2 = (int(round(x2)) - 1, int(round(y2)) - 1)
            cv2.rectangle(canvas, p1, p2, colour, thickness + 1)
            label = attribute_text(r, text)
            if label:
                _put_text(canvas, label, p1, colour, (y2 - y1) / 400)
    return canvas


def scale_result(result: PersonResult, factor: int) -> PersonResult:
    """``result`` for the image enlarged ``factor`` times: box, keypoints (pixel centres:
    ``x' = (x + 0.5)·f − 0.5``) and the part map (each label repeated ``factor`` times)."""
    out = dataclasses.replace(result, box=tuple(v * factor for v in result.box))
    if result.keypoints is not None:
        out.keypoints = result.keypoints.copy()
        out.keypoints[:, :2] = (result.keypoints[:, :2] + 0.5) * factor - 0.5
    if result.parts is not None and result.parts_box is not None:
        out.parts = np.repeat(np.repeat(result.parts, factor, axis=0), factor, axis=1)
        out.parts_box = tuple(v * factor for v in result.parts_box)
    return out


def save_part_maps(path: str | Path, labels: np.ndarray, num_classes: int) -> Path:
    """A part label map as two PNGs: ``path`` holds the class ids (8-bit, one channel: for
    programs), ``<stem>_color.png`` the same in the overlay palette (for people: ids 0–4 or
    0–19 look black)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", labels.astype(np.uint8))
    if not ok:
        raise OSError(f"cannot encode part labels {path}")
    buf.tofile(path)
    colours = part_palette(max(num_classes, int(labels.max()) + 1))
    save_image(path.with_name(f"{path.stem}_color.png"), colours[labels])
    return path


def _put_text(canvas: np.ndarray, text: str, corner: tuple[int, int], colour: Colour,
              scale: float) -> None:
    scale = float(np.clip(scale, 0.3, 0.7))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = corner
    x = max(0, min(x, canvas.shape[1] - tw))
    y = y - 3 if y - th - base - 3 >= 0 else y + th + 3
    cv2.rectangle(canvas, (x, y - th - 2), (x + tw, y + base - 1), (0, 0, 0), -1)
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def save_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB ``uint8`` image (format from the suffix); raises OSError on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"cannot encode image {path}")
    buf.tofile(path)
    return path


def shift_result(result: PersonResult, dx: float, dy: float) -> PersonResult:
    """``result`` in the coordinates of an image whose origin is at ``(dx, dy)`` of the
    original (a crop): box, keypoints and part box move; labels are unchanged."""
    out = dataclasses.replace(result, box=(result.box[0] - dx, result.box[1] - dy,
                                           result.box[2] - dx, result.box[3] - dy))
    if result.keypoints is not None:
        out.keypoints = result.keypoints.copy()
        out.keypoints[:, 0] -= dx
        out.keypoints[:, 1] -= dy
    if result.parts_box is not None:
        x1, y1, x2, y2 = result.parts_box
        out.parts_box = (int(x1 - dx), int(y1 - dy), int(x2 - dx), int(y2 - dy))
    return out


def view(image: np.ndarray, result: PersonResult,
         margin: float = 0.1) -> tuple[np.ndarray, PersonResult]:
    """One person's part of ``image``: the box with ``margin`` of its size around it, inside
    the image (a view, not a copy), and ``result`` in that crop's coordinates.

    Raises:
        ValueError: the box has no area inside the image.
    """
    image = to_rgb_uint8(image)
    x1, y1, x2, y2 = result.box
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    cx1, cy1 = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
    cx2 = int(min(image.shape[1], np.ceil(x2 + mx)))
    cy2 = int(min(image.shape[0], np.ceil(y2 + my)))
    if cx2 <= cx1 or cy2 <= cy1:
        raise ValueError(f"box {tuple(round(v, 1) for v in result.box)} has no area inside "
                         f"the {image.shape[1]}x{image.shape[0]} image")
    return image[cy1:cy2, cx1:cx2], shift_result(result, cx1, cy1)


def draw_thumbnail(crop: np.ndarray, result: PersonResult, height: int = 128,
                   overlays: bool = True) -> np.ndarray:
    """A :func:`view` scaled to ``height`` pixels; with ``overlays``, parts, skeleton and box
    drawn on it first (the box coloured by ``result``'s gender)."""
    if overlays:
        crop = draw_results(crop, [result], text=())
    scale = height / crop.shape[0]
    width = max(1, int(round(crop.shape[1] * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(crop, (width, height), interpolation=interp)


def thumbnail(image: np.ndarray, result: PersonResult, height: int = 128,
              margin: float = 0.1, overlays: bool = False) -> np.ndarray:
    """One person's picture for an index: the plain crop of its :func:`view` (its clothing
    colours as they are), or with ``overlays`` drawn (:func:`draw_thumbnail`)."""
    return draw_thumbnail(*view(image, result, margin), height, overlays)
