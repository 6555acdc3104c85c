"""A contact sheet of a synthesized world, read back from the written files.

Rows: Market identities (query first, then gallery crops from other cameras, then a junk and a
distractor crop), MPII scenes with skeletons, head boxes and centres, LIP images with joints
and their part masks. Visible joints are filled dots, occluded ones rings.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np

from personkit.data.constants import MPII_SKELETON

#: One colour (RGB) per LIP class id, for mask overlays.
LIP_PALETTE = np.array([
    (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51), (255, 85, 0), (0, 0, 85),
    (0, 119, 221), (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0),
    (0, 0, 255), (51, 170, 221), (0, 255, 255), (85, 255, 170), (170, 255, 85),
    (255, 255, 0), (255, 170, 0)], dtype=np.uint8)
_NAME = re.compile(r"([-\d]+)_c(\d)s(\d)_(\d+)_(\d+)\.jpg")


def _read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def _fit(img: np.ndarray, height: int) -> np.ndarray:
    w = max(1, round(img.shape[1] * height / img.shape[0]))
    return cv2.resize(img, (w, height), interpolation=cv2.INTER_NEAREST)


def _draw_pose(img: np.ndarray, joints: np.ndarray, ok: np.ndarray, occl: np.ndarray,
               scale: float) -> None:
    """Skeleton and joints (image coordinates already multiplied by ``scale``)."""
    p = lambda k: (int(round(joints[k, 0] * scale)), int(round(joints[k, 1] * scale)))
    for a, b in MPII_SKELETON:
        if ok[a] and ok[b]:
            cv2.line(img, p(a), p(b), (255, 255, 255), 1, cv2.LINE_AA)
    for k in range(len(joints)):
        if ok[k]:
            col = (255, 60, 60) if k in (0, 1, 2, 10, 11, 12) else (60, 160, 255)
            cv2.circle(img, p(k), 3, col, 1 if occl[k] else -1, cv2.LINE_AA)


def _market_rows(root: Path, n_ids: int) -> list[list[np.ndarray]]:
    parse = lambda p: (int(_NAME.fullmatch(p.name).group(1)), int(_NAME.fullmatch(p.name).group(2)))
    queries = sorted((root / "query").glob("*.jpg"))
    gallery = sorted((root / "bounding_box_test").glob("*.jpg"))
    junk = [g for g in gallery if parse(g)[0] == -1]
    distract = [g for g in gallery if parse(g)[0] == 0]
    rows, seen = [], set()
    for q in queries:
        pid, cam = parse(q)
        if pid in seen:
            continue
        seen.add(pid)
        good = [g for g in gallery if parse(g)[0] == pid and parse(g)[1] != cam][:7]
        extra = [p for p in (junk[len(rows) % max(1, len(junk))] if junk else None,
                             distract[len(rows) % max(1, len(distract))] if distract else None)
                 if p is not None]
        tiles = [_read(q)]
        tiles[0][:2] = (255, 255, 0)  # mark the query
        tiles += [_read(g) for g in good + extra]
        rows.append([cv2.resize(t, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
                     for t in tiles])
        if len(rows) == n_ids:
            break
    return rows


def _mpii_tiles(root: Path, n: int) -> list[np.ndarray]:
    records = json.loads((root / "annot" / "valid.json").read_text())
    records += json.loads((root / "annot" / "train.json").read_text())
    by_image: dict[str, list[dict]] = {}
    for r in records:
        by_image.setdefault(r["image"], []).append(r)
    tiles = []
    for name in sorted(by_image)[:n]:
        img = _fit(_read(root / "images" / name), 240)
        s = 240 / cv2.imread(str(root / "images" / name)).shape[0]
        for r in by_image[name]:
            j = np.array(r["joints"], float) - 1
            ok = np.array(r["joints_vis"], bool)
            _draw_pose(img, j, ok, np.zeros(16, bool), s)
            c = (np.array(r["center"]) - 1) * s
            cv2.circle(img, (int(c[0]), int(c[1])), 2, (255, 255, 0), -1)
        tiles.append(img)
    return tiles


def _lip_tiles(root: Path, n: int) -> list[np.ndarray]:
    rows = list(csv.reader((root / "TrainVal_pose_annotations" / "lip_val_set.csv").open()))
    tiles = []
    for row in rows[:n]:
        name = row[0]
        img = _read(root / "TrainVal_images" / "val_images" / name)
        mask = cv2.imread(str(root / "TrainVal_parsing_annotations" / "val_segmentations" /
                               (name[:-4] + ".png")), cv2.IMREAD_UNCHANGED)
        vals = np.array([float(v) for v in row[1:]]).reshape(16, 3)
        ok = ~np.isnan(vals[:, 0])
        j = np.nan_to_num(vals[:, :2])
        s = 200 / img.shape[0]
        a, m = _fit(img, 200), _fit(LIP_PALETTE[mask], 200)
        overlay = (0.45 * a + 0.55 * m).astype(np.uint8)
        _draw_pose(a, j, ok, vals[:, 2] == 1, s)
        tiles += [a, overlay]
    return tiles


def _pack(tiles: list[np.ndarray], width: int, gap: int = 4) -> list[np.ndarray]:
    """Rows of tiles (same height within a row) no wider than ``width``."""
    rows, cur, w = [], [], 0
    for t in tiles:
        if cur and w + t.shape[1] + gap > width:
            rows.append(cur)
            cur, w = [], 0
        cur.append(t)
        w += t.shape[1] + gap
    if cur:
        rows.append(cur)
    out = []
    for r in rows:
        h = max(t.shape[0] for t in r)
        row = np.full((h, width, 3), 40, np.uint8)
        x = 0
        for t in r:
            row[:t.shape[0], x:x + t.shape[1]] = t
            x += t.shape[1] + gap
        out.append(row)
    return out


def contact_sheet(out_dir: str | Path, path: str | Path, width: int = 1400) -> Path:
    """Write a PNG contact sheet of the world in ``out_dir`` to ``path``; returns ``path``."""
    out = Path(out_dir)
    rows: list[np.ndarray] = []
    for tiles in _market_rows(out / "Market-1501-v15.09.15", 6):
        rows += _pack(tiles, width)
    rows += _pack(_mpii_tiles(out / "mpii", 6), width)
    rows += _pack(_lip_tiles(out / "LIP", 6), width)
    sep = np.full((4, width, 3), 40, np.uint8)
    sheet = np.concatenate([x for r in rows for x in (r, sep)], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet[:, :, ::-1])
    return path
