"""Writers of tiny datasets in the exact native formats, for tests (Market-1501/Duke folders and
attribute .mat files, MPII RELEASE .mat and JSON, LIP nested/flattened layouts).

Tests under ``tests/data`` import it as ``import native`` (``tests/data/conftest.py`` puts this
folder on ``sys.path``); tests elsewhere can do the same ``sys.path`` insertion or load it by
file path with ``importlib.util.spec_from_file_location``. Every writer takes explicit contents
and returns the paths it wrote; nothing here knows about personkit's readers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import scipy.io

# --------------------------------------------------------------------------- images


def write_image(path: Path, height: int = 32, width: int = 16, seed: int = 0) -> Path:
    """A small random RGB image (JPEG or PNG by suffix)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return write_array(path, image)


def write_array(path: Path, array: np.ndarray) -> Path:
    """Encode ``array`` (RGB H×W×3 or H×W) to ``path`` with OpenCV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, 100] if path.suffix == ".jpg" else []
    ok, buf = cv2.imencode(path.suffix, array, params)
    assert ok, path
    buf.tofile(path)
    return path


# --------------------------------------------------------------------------- Market / Duke


def write_reid_folders(root: Path, files: Mapping[str, Sequence[str]], height: int = 32,
                       width: int = 16) -> Path:
    """``root/<folder>/<name>`` images for every folder -> names entry; returns ``root``."""
    for folder, names in files.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            write_image(root / folder / name, height, width, seed=i)
    return root


def write_attribute_mat(path: Path, struct: str, train: Mapping[str, Mapping[str, int]],
                        test: Mapping[str, Mapping[str, int]], train_order: Sequence[str],
                        test_order: Sequence[str]) -> Path:
    """A Lin et al. attribute file: ``struct.{train,test}`` with 1×N uint8 fields per name in
    the given order, and ``image_index``, a 1×N cell of 4-character pid strings (sorted).

    ``train``/``test`` map pid string -> {field: value}; missing fields are written as 1.
    """
    def part(table: Mapping[str, Mapping[str, int]], order: Sequence[str]) -> dict[str, Any]:
        pids = sorted(table)
        out: dict[str, Any] = {}
        for name in order:
            if name == "image_index":
                cell = np.empty((1, len(pids)), dtype=object)
                cell[0, :] = pids
                out[name] = cell
            else:
                out[name] = np.array([[table[p].get(name, 1) for p in pids]], dtype=np.uint8)
        return out

    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {struct: {"train": part(train, train_order),
                                          "test": part(test, test_order)}})
    return path


# --------------------------------------------------------------------------- MPII


def _struct_array(rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> np.ndarray:
    """A MATLAB 1×N struct array (numpy structured array of objects); missing fields = []."""
    array = np.zeros((1, len(rows)), dtype=[(f, "O") for f in fields])
    for i, row in enumerate(rows):
        array[0, i] = tuple(row.get(f, np.zeros((0, 0))) for f in fields)
    return array


def mpii_rect(joints: Mapping[int, tuple[float, float, Any]] | None,
              head_box: tuple[float, float, float, float] | None,
              objpos: tuple[float, float], scale: float) -> dict[str, Any]:
    """One ``annorect``: 1-based ``joints`` {id: (x, y, is_visible)}, None = no annopoints.

    ``is_visible`` is written as given: 0/1, a string such as ``'1'``, or None for ``[]``,
    all of which occur in the real file.
    """
    rect: dict[str, Any] = {"scale": np.array([[scale]]),
                            "objpos": {"x": float(objpos[0]), "y": float(objpos[1])}}
    if head_box is not None:
        rect.update({k: np.array([[v]]) for k, v in zip(("x1", "y1", "x2", "y2"), head_box,
                                                          strict=True)})
    if joints is not None:
        points = [{"x": np.array([[x]]), "y": np.array([[y]]), "id": np.array([[j]]),
                   "is_visible": np.zeros((0, 0)) if v is None else v}
                  for j, (x, y, v) in joints.items()]
        rect["annopoints"] = {"point": _struct_array(points, ("x", "y", "id", "is_visible"))}
    return rect


def write_mpii_mat(path: Path, images: Sequence[Mapping[str, Any]]) -> Path:
    """``mpii_human_pose_v1_u12_1.mat`` with the ``RELEASE`` struct of the official file.

    Each image is ``{"name", "train": bool, "rects": [mpii_rect(...)], "single": [1-based]}``.
    """
    rect_fields = ("x1", "y1", "x2", "y2", "annopoints", "scale", "objpos")
    annolist = []
    for im in images:
        rects = im.get("rects", [])
        annolist.append({"image": {"name": im["name"]},
                         "annorect": _struct_array(rects, rect_fields) if rects else
                         np.zeros((0, 0)),
                         "frame_sec": np.zeros((0, 0)), "vididx": np.zeros((0, 0))})
    single = np.empty((len(images), 1), dtype=object)
    for i, im in enumerate(images):
        ids = im.get("single", [])
        single[i, 0] = np.array(ids, dtype=float).reshape(-1, 1) if ids else np.zeros((0, 0))
    act = _struct_array([{"cat_name": "sports", "act_name": "running", "act_id": 1}] *
                        len(images), ("cat_name", "act_name", "act_id")).T
    release = {
        "annolist": _struct_array(annolist, ("image", "annorect", "frame_sec", "vididx")),
        "img_train": np.array([[int(im["train"]) for im in images]], dtype=float),
        "version": "12", "single_person": single, "act": act,
        "video_list": np.array([["vid0"]], dtype=object),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"RELEASE": release})
    return path


def write_json(path: Path, content: Any) -> Path:
    """``json.dump`` to ``path`` (MPII HRNet-style annotation lists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


# --------------------------------------------------------------------------- LIP


def lip_paths(root: Path, split: str, layout: str) -> dict[str, Path]:
    """Image folder, parsing folder, id list and pose CSV of ``layout`` nested/flat."""
    if layout == "nested":
        return {"images": root / "TrainVal_images" / "TrainVal_images" / f"{split}_images",
                "masks": root / "TrainVal_parsing_annotations" / "TrainVal_parsing_annotations"
                / f"{split}_segmentations",
                "ids": root / "TrainVal_images" / "TrainVal_images" / f"{split}_id.txt",
                "pose": root / "TrainVal_pose_annotations" / f"lip_{split}_set.csv"}
    if layout == "flat":
        return {"images": root / f"{split}_images", "masks": root / f"{split}_segmentations",
                "ids": root / f"{split}_id.txt", "pose": root / f"lip_{split}_set.csv"}
    raise ValueError(layout)


def write_lip(root: Path, split: str, layout: str, masks: Mapping[str, np.ndarray],
              pose_lines: Sequence[str] | None = None) -> dict[str, Path]:
    """LIP files for ``split``: an RGB JPEG and a grayscale label PNG per id (of the mask's
    size), the id list, and a headerless pose CSV made of ``pose_lines`` (raw text rows)."""
    paths = lip_paths(root, split, layout)
    for i, (image_id, mask) in enumerate(sorted(masks.items())):
        write_image(paths["images"] / f"{image_id}.jpg", *mask.shape, seed=i)
        write_array(paths["masks"] / f"{image_id}.png", mask.astype(np.uint8))
    paths["ids"].write_text("".join(f"{i}\n" for i in masks))
    if pose_lines is not None:
        paths["pose"].parent.mkdir(parents=True, exist_ok=True)
        paths["pose"].write_text("\n".join(pose_lines) + "\n")
    return paths


def lip_pose_line(name: str, joints: Sequence[tuple[float, float, float] | None]) -> str:
    """A LIP CSV row: name, then x,y,v per joint, ``nan,nan,nan`` for None."""
    cells = [name]
    for j in joints:
        cells += ["nan"] * 3 if j is None else [f"{v:g}" for v in j]
    return ",".join(cells)
