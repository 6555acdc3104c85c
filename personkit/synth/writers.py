"""Native-format writers: Market-1501 attribute .mat, MPII RELEASE .mat and JSON, LIP lists/CSV.

All coordinates handed to these writers are personkit's 0-based pixel centres; the MPII
writers add 1 (MATLAB convention, as in the real files), the LIP CSV keeps 0-based integer
pixels. ``savemat`` output is made byte-deterministic by replacing scipy's time-stamped
116-byte text header with a fixed one.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io

from personkit.synth.appearance import DOWN_COLOURS, UP_COLOURS
from personkit.synth.items import PersonAnno

MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: personkit.synth"

#: Field orders of the two attribute structs (they differ, as in the real file).
TRAIN_FIELDS: tuple[str, ...] = (
    "age", "backpack", "bag", "handbag", *("down" + c for c in sorted(DOWN_COLOURS)),
    *("up" + c for c in sorted(UP_COLOURS)), "clothes", "down", "up", "hair", "hat", "gender",
    "image_index")
TEST_FIELDS: tuple[str, ...] = (
    "age", "backpack", "bag", "handbag", "clothes", "down", "up", "hair", "hat", "gender",
    *("up" + c for c in UP_COLOURS), *("down" + c for c in DOWN_COLOURS), "image_index")


def savemat_deterministic(path: Path, variables: dict) -> None:
    """``scipy.io.savemat`` (v5, uncompressed) with a fixed header instead of a time stamp."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, do_compression=False, oned_as="row")
    data = bytearray(buf.getvalue())
    data[:116] = MAT_HEADER.ljust(116, b" ")
    Path(path).write_bytes(bytes(data))


def _cell_row(items: Sequence) -> np.ndarray:
    cell = np.empty((1, len(items)), dtype=object)
    for i, x in enumerate(items):
        cell[0, i] = x
    return cell


def _struct(fields: dict) -> np.ndarray:
    """A 1×1 MATLAB struct from a dict of field -> value (fields in dict order)."""
    arr = np.empty((1, 1), dtype=[(k, object) for k in fields])
    for k, v in fields.items():
        arr[k][0, 0] = v
    return arr


def market_attribute_struct(attrs: dict[int, dict[str, int]], order: Sequence[str]) -> np.ndarray:
    """One split's 1×1 struct: 1×N uint8 row per field, ``image_index`` cell of pid strings."""
    pids = sorted(attrs)
    fields = {}
    for name in order:
        if name == "image_index":
            fields[name] = _cell_row([f"{p:04d}" for p in pids])
        else:
            fields[name] = np.array([[attrs[p][name] for p in pids]], dtype=np.uint8)
    return _struct(fields)


def write_market_attributes(path: Path, train: dict[int, dict[str, int]],
                            test: dict[int, dict[str, int]]) -> None:
    """``market_attribute.mat``: struct ``market_attribute`` with ``train`` and ``test``."""
    top = _struct({"train": market_attribute_struct(train, TRAIN_FIELDS),
                   "test": market_attribute_struct(test, TEST_FIELDS)})
    savemat_deterministic(path, {"market_attribute": top})


# -------------------------------------------------------------------------------------- MPII


def _points(a: PersonAnno) -> np.ndarray:
    """1×K struct array of annotated joints: x, y (1-based), id (0-15), is_visible."""
    ks = [k for k in range(16) if a.annotated[k]]
    pts = np.empty((1, len(ks)), dtype=[("x", object), ("y", object), ("id", object),
                                          ("is_visible", object)])
    for i, k in enumerate(ks):
        pts[0, i] = (np.array([[round(float(a.joints[k, 0]) + 1, 2)]]),
                     np.array([[round(float(a.joints[k, 1]) + 1, 2)]]),
                     np.array([[k]], dtype=np.uint8),
                     np.array([[0 if a.occluded[k] else 1]], dtype=np.uint8))
    return pts


def _annorect(annos: list[PersonAnno], annotated: bool) -> np.ndarray:
    """1×R struct array of the people of one image (test images: objpos and scale only)."""
    keys = (["x1", "y1", "x2", "y2", "annopoints"] if annotated else []) + ["scale", "objpos"]
    rect = np.empty((1, len(annos)), dtype=[(k, object) for k in keys])
    for r, a in enumerate(annos):
        vals = {"scale": np.array([[round(a.scale, 4)]]),
                "objpos": _struct({"x": np.array([[round(a.center[0] + 1, 2)]]),
                                   "y": np.array([[round(a.center[1] + 1, 2)]])})}
        if annotated:
            for name, v in zip(("x1", "y1", "x2", "y2"), a.head_box, strict=True):
                vals[name] = np.array([[round(v + 1, 2)]])
            vals["annopoints"] = _struct({"point": _points(a)})
        rect[0, r] = tuple(vals[k] for k in keys)
    return rect


def _single_person(annos: list[PersonAnno]) -> np.ndarray:
    """Column vector of 1-based indices of people whose boxes are apart from all others."""
    boxes = []
    for a in annos:
        lo, hi = a.joints.min(0), a.joints.max(0)
        pad = 0.1 * (hi - lo)
        boxes.append(np.r_[lo - pad, hi + pad])
    alone = []
    for i, bi in enumerate(boxes):
        if all(bi[2] < bj[0] or bj[2] < bi[0] or bi[3] < bj[1] or bj[3] < bi[1]
               for j, bj in enumerate(boxes) if j != i):
            alone.append(i + 1)
    return np.array(alone, dtype=np.float64).reshape(-1, 1)


def write_mpii_mat(path: Path, names: list[str], annos: list[list[PersonAnno]],
                   is_train: list[bool]) -> None:
    """``mpii_human_pose_v1_u12_1.mat``: struct ``RELEASE`` in the real layout (1-based)."""
    n = len(names)
    annolist = np.empty((1, n), dtype=[("image", object), ("annorect", object),
                                       ("frame_sec", object), ("vididx", object)])
    single = np.empty((n, 1), dtype=object)
    act = np.empty((n, 1), dtype=[("cat_name", object), ("act_name", object),
                                  ("act_id", object)])
    for i, (name, people, train) in enumerate(zip(names, annos, is_train, strict=True)):
        annolist[0, i] = (_struct({"name": name}), _annorect(people, train),
                          np.zeros((0, 0)), np.zeros((0, 0)))
        single[i, 0] = _single_person(people) if train else np.zeros((0, 0))
        act[i, 0] = (np.zeros((0, 0)), np.zeros((0, 0)), np.array([[-1]], dtype=np.int16))
    release = _struct({
        "annolist": annolist,
        "img_train": np.array([is_train], dtype=np.uint8),
        "version": "12",
        "single_person": single,
        "act": act,
        "video_list": np.empty((1, 0), dtype=object),
    })
    savemat_deterministic(path, {"RELEASE": release})


def mpii_json_records(names: list[str], annos: list[list[PersonAnno]]) -> list[dict]:
    """HRNet-style JSON records of the single-person rects (1-based; missing joints [-1, -1],
    ``joints_vis`` = annotated), plus a ``head_box`` [x1, y1, x2, y2] key for PCKh."""
    out = []
    for name, people in zip(names, annos, strict=True):
        for r in _single_person(people).ravel().astype(int):
            a = people[r - 1]
            joints = [[round(float(x) + 1, 2), round(float(y) + 1, 2)] if ok else [-1.0, -1.0]
                      for (x, y), ok in zip(a.joints, a.annotated, strict=True)]
            out.append({"joints_vis": [int(v) for v in a.annotated], "joints": joints,
                        "image": name, "scale": round(a.scale, 4),
                        "center": [round(a.center[0] + 1, 2), round(a.center[1] + 1, 2)],
                        "head_box": [round(v + 1, 2) for v in a.head_box]})
    return out


# --------------------------------------------------------------------------------------- LIP


def lip_csv_row(name: str, a: PersonAnno) -> str:
    """``name.jpg`` then 16 × (x, y, v): 0-based integer pixels, v = 1 occluded, ``nan`` missing."""
    vals = [name]
    for k in range(16):
        if a.annotated[k]:
            x, y = a.joints[k]
            vals += [str(int(round(x))), str(int(round(y))), str(int(a.occluded[k]))]
        else:
            vals += ["nan", "nan", "nan"]
    return ",".join(vals)


def write_lines(path: Path, lines: list[str]) -> None:
    """A text file with one line per entry."""
    Path(path).write_text("".join(line + "\n" for line in lines))
