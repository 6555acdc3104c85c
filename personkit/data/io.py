"""Low-level file access shared by the dataset readers: image and label decoding, folder checks
and robust accessors for MATLAB ``.mat`` structs.

Bad-file policy: every failure names the file. A folder or annotation file that is missing is a
:class:`FileNotFoundError` (raised by :func:`require_dir`/:func:`require_file`), a malformed
annotation is a :class:`DatasetError`, and an image or label PNG that cannot be decoded is a
:class:`BadImageError`, which :class:`~personkit.data.dataset.PersonDataset` may skip
(``on_bad_image="skip"``) instead of raising.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import scipy.io


class DatasetError(ValueError):
    """A dataset file or folder that cannot be used; the message names it and what was expected."""


class BadImageError(DatasetError):
    """An image or label file that is missing or cannot be decoded."""


class MissingImageError(BadImageError, FileNotFoundError):
    """An image or label file that does not exist (both a :class:`BadImageError`, which
    ``data.on_bad_image`` handles, and a ``FileNotFoundError``)."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset file or folder that does not exist (also a :class:`FileNotFoundError`)."""


def wrap_error(e: Exception, prefix: str) -> DatasetError:
    """``e`` as a personkit error whose message starts with ``prefix`` (chain it with
    ``raise wrap_error(e, ...) from e``): a missing file stays a FileNotFoundError, anything
    else becomes a :class:`DatasetError`. Unlike ``type(e)(message)`` this works for every
    exception type (``UnicodeDecodeError`` takes five constructor arguments)."""
    cls = DatasetNotFoundError if isinstance(e, FileNotFoundError) else DatasetError
    return cls(f"{prefix}: {e}")


def read_text(path: str | Path, dataset: str) -> str:
    """The UTF-8 text of an annotation file; a :class:`DatasetError` naming the file (and the
    line of the first bad byte) when it is not UTF-8."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DatasetError(f"{dataset}: {path}:{line}: not UTF-8 text ({e.reason} at byte "
                           f"{e.start})") from e


def require_dir(path: Path, dataset: str, what: str = "folder") -> Path:
    """``path`` if it is a folder, else a FileNotFoundError naming it and the dataset."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{dataset}: expected {what} '{path.name}' under {path.parent} (not found)")
    return path


def require_file(path: Path, dataset: str, what: str = "file") -> Path:
    """``path`` if it is a file, else a FileNotFoundError naming it and the dataset."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{dataset}: expected {what} '{path.name}' under {path.parent} (not found)")
    return path


def first_existing(candidates: list[Path], dataset: str, what: str) -> Path:
    """The first existing path of ``candidates``, else a FileNotFoundError listing them all."""
    for path in candidates:
        if path.exists():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(f"{dataset}: expected {what}; looked for: {tried}")


def _read_bytes(path: Path) -> np.ndarray:
    try:
        return np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise MissingImageError(f"image file not found: {path}") from None
    except OSError as e:
        raise BadImageError(f"cannot read image file {path}: {e}") from e


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file as RGB ``uint8`` H×W×3 (grayscale files become 3-channel); the one
    image reader of training, evaluation and inference.

    Raises:
        MissingImageError: the file does not exist (a ``FileNotFoundError`` too).
        BadImageError: the file is empty, truncated or not a decodable image (a
            ``ValueError``), or it has more pixels than :func:`max_pixels` allows.
    """
    path = Path(path)
    return decode_image(_read_bytes(path), f"image file {path}")


def decode_image(buf: np.ndarray | bytes, what: str) -> np.ndarray:
    """Decode image bytes (``what`` names them in errors) as RGB ``uint8`` H×W×3. A JPEG
    without its end marker or a PNG without its end chunk is refused as truncated: OpenCV
    would decode the part that arrived and fill the rest with grey.

    Raises:
        BadImageError: empty, truncated, not an image, or more pixels than :func:`max_pixels`.
    """
    buf = np.frombuffer(buf, np.uint8) if isinstance(buf, bytes | bytearray) else buf
    if not buf.size:
        raise BadImageError(f"{what} is empty")
    check_pixels(buf, what)
    tail = bytes(buf[-64:]).rstrip(b"\x00")
    if (bytes(buf[:2]) == b"\xff\xd8" and b"\xff\xd9" not in tail) or (
            bytes(buf[:8]) == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail):
        raise BadImageError(f"{what} is truncated (its end marker is missing)")
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None:
        raise BadImageError(f"cannot decode {what} (not a JPEG, PNG, BMP, ... image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


#: The most pixels an image may have (``PERSONKIT_MAX_IMAGE_PIXELS`` overrides): 64 MP is an
#: 8000×8000 photo, 8× a 4K frame; a 20000×20000 PNG would take 1.2 GB decoded (4.5 GB
#: resident while OpenCV converts it).
MAX_PIXELS_VAR, DEFAULT_MAX_PIXELS = "PERSONKIT_MAX_IMAGE_PIXELS", 64_000_000


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB ``uint8`` image."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError(f"cannot encode a {rgb.shape} image as JPEG")
    return buf.tobytes()


def max_pixels() -> int:
    value = os.environ.get(MAX_PIXELS_VAR, "")
    if not value:
        return DEFAULT_MAX_PIXELS
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{MAX_PIXELS_VAR}={value!r}: expected a whole number of pixels >= 1")
    return int(value)


def check_pixels(buf: np.ndarray, path: Path | str) -> None:
    """Refuse, before decoding, an image whose header announces more than :func:`max_pixels`
    pixels (PNG, JPEG and BMP headers are read; other formats rely on OpenCV's own limit)."""
    size = image_size(buf)
    if size is not None and size[0] * size[1] > max_pixels():
        raise BadImageError(f"{path} is {size[0]}×{size[1]} = {size[0] * size[1]:,} "
                            f"pixels, more than the limit of {max_pixels():,} (set "
                            f"{MAX_PIXELS_VAR} to allow more)")


def image_size(buf: np.ndarray) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG, JPEG or BMP header (None for other or broken files)."""
    head = bytes(buf[:64])
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:2] == b"BM" and len(head) >= 26:
        return (int.from_bytes(head[18:22], "little", signed=True),
                abs(int.from_bytes(head[22:26], "little", signed=True)))
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(buf)
    return None


def _jpeg_size(buf: np.ndarray) -> tuple[int, int] | None:
    """The frame size of a JPEG's first SOF marker (segments walked from the start)."""
    data, i = buf, 2
    while i + 9 < data.size:
        if data[i] != 0xFF:
            return None
        marker = int(data[i + 1])
        length = int(data[i + 2]) << 8 | int(data[i + 3])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return (int(data[i + 7]) << 8 | int(data[i + 8]),
                    int(data[i + 5]) << 8 | int(data[i + 6]))
        i += 2 + length
    return None


def _png_colour_type(buf: np.ndarray) -> int | None:
    """PNG colour type from the IHDR chunk (3 = palette), or None if not a PNG."""
    if buf.size < 26 or bytes(buf[:8]) != b"\x89PNG\r\n\x1a\n":
        return None
    return int(buf[25])


def _decode_palette_png(path: Path) -> np.ndarray:
    # OpenCV expands palette PNGs to BGR colours, which loses the class ids; Pillow (a
    # dependency of matplotlib) returns the palette indices themselves.
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im, dtype=np.uint8).copy()


def read_mask(path: str | Path) -> np.ndarray:
    """Decode a label PNG as ``uint8`` H×W class ids.

    Single-channel 8-bit PNGs (LIP) are returned as stored; palette PNGs yield their palette
    indices; for a multi-channel file the first channel (R) is used, as the authors do.

    Raises:
        BadImageError: the file is missing, not decodable, or not 8-bit.
    """
    path = Path(path)
    buf = _read_bytes(path)
    check_pixels(buf, path)
    if _png_colour_type(buf) == 3:
        try:
            return _decode_palette_png(path)
        except OSError as e:
            raise BadImageError(f"cannot decode label file {path}: {e}") from e
    mask = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if mask is None:
        raise BadImageError(f"cannot decode label file {path}")
    if mask.dtype != np.uint8:
        raise BadImageError(f"label file {path}: expected 8-bit class ids, got {mask.dtype}")
    if mask.ndim == 3:
        mask = mask[:, :, 2] if mask.shape[2] >= 3 else mask[:, :, 0]  # BGR(A): R is index 2
    return np.ascontiguousarray(mask)


# --------------------------------------------------------------------------- MATLAB structs


def load_mat(path: Path, dataset: str) -> dict[str, Any]:
    """``scipy.io.loadmat`` with squeezed ``mat_struct`` objects (attribute access by name)."""
    require_file(path, dataset, "annotation file")
    try:
        return scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as e:  # scipy raises several types for corrupt files
        raise DatasetError(f"{dataset}: cannot read MATLAB file {path}: {e}") from e


def mat_items(value: Any) -> list[Any]:
    """The elements of a squeezed MATLAB array/struct array/cell as a list.

    After ``squeeze_me=True`` a 1-element struct array is a bare ``mat_struct``, a 1-element
    numeric array a scalar, and an empty field an empty array; all become lists here.
    """
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    if isinstance(value, str) and value == "":
        return []
    return [value]


def mat_scalar(value: Any) -> float | None:
    """A MATLAB scalar as float; None for empty fields. Accepts numbers and numeric strings."""
    items = mat_items(value)
    if not items:
        return None
    item = items[0]
    if isinstance(item, str):
        item = item.strip()
        return float(item) if item else None
    return float(item)


def mat_field(struct: Any, name: str) -> Any:
    """Field ``name`` of a ``mat_struct``, or None when the struct lacks it."""
    return getattr(struct, name, None)
