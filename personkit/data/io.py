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


def read_utf8(path: Path) -> str:
    """A text file as UTF-8 (MOT files, boxes files); a ValueError naming the file and the line
    of the first bad byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def read_text(path: str | Path, dataset: str) -> str:
    """The UTF-8 text of an annotation file; a :class:`DatasetError` naming the dataset, the
    file (and the line of the first bad byte) when it is not UTF-8 (:func:`read_utf8`)."""
    try:
        return read_utf8(Path(path))
    except ValueError as e:
        raise DatasetError(f"{dataset}: {e}") from e


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


def decode_image(buf: np.ndarray | bytes, what: str, limit: int | None = None) -> np.ndarray:
    """Decode image bytes (``what`` names them in errors) as RGB ``uint8`` H×W×3. The size is
    read from the header first (:func:`check_pixels`), so nothing over the pixel limit is
    decoded. A JPEG without its end marker or a PNG without its end chunk is refused as
    truncated: OpenCV would decode the part that arrived and fill the rest with grey.

    Raises:
        ImageTooLargeError: more pixels than ``limit`` (default :func:`max_pixels`).
        BadImageError: empty, truncated, or not an image.
    """
    buf = np.frombuffer(buf, np.uint8) if isinstance(buf, bytes | bytearray) else buf
    if not buf.size:
        raise BadImageError(f"{what} is empty")
    check_pixels(buf, what, limit)
    tail = bytes(buf[-64:]).rstrip(b"\x00")
    if (bytes(buf[:2]) == b"\xff\xd8" and b"\xff\xd9" not in tail) or (
            bytes(buf[:8]) == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail):
        raise BadImageError(f"{what} is truncated (its end marker is missing)")
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None:
        raise BadImageError(f"cannot decode {what} (not a JPEG, PNG, BMP, WebP, TIFF, ... image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class ImageTooLargeError(BadImageError):
    """An image whose header declares more pixels than the limit (nothing was decoded)."""


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


def check_pixels(buf: np.ndarray, path: Path | str, limit: int | None = None) -> tuple[int, int]:
    """``(width, height)`` from the header of an image in any format the decoders read
    (:func:`image_size`), refused before decoding when it has more than ``limit`` pixels
    (default :func:`max_pixels`); bytes whose size cannot be read are not decoded either.

    Raises:
        ImageTooLargeError: over the limit (naming ``path``, the size and the limit).
        BadImageError: not an image format whose header can be read.
    """
    limit = max_pixels() if limit is None else int(limit)
    hint = f" (set {MAX_PIXELS_VAR} to allow more)" if limit == max_pixels() else ""
    try:
        size = _header_size(buf)
    except _Bomb as e:  # more pixels than Pillow itself will describe
        raise ImageTooLargeError(f"{path} declares {e}, more than the limit of {limit:,}"
                                 f"{hint}") from None
    if size is None:
        raise BadImageError(f"cannot decode {path} (not a JPEG, PNG, BMP, WebP, TIFF, ... image)")
    if size[0] * size[1] > limit:
        raise ImageTooLargeError(f"{path} is {size[0]}×{size[1]} = {size[0] * size[1]:,} "
                                 f"pixels, more than the limit of {limit:,}{hint}")
    return size


class _Bomb(Exception):
    """Pillow's decompression-bomb refusal (its message gives the pixel count only)."""


def image_size(buf: np.ndarray | bytes) -> tuple[int, int] | None:
    """``(width, height)`` from an image's header (:func:`_header_size`); None when the
    format is not recognised or the image is too large for Pillow to describe."""
    try:
        return _header_size(buf)
    except _Bomb:
        return None


def _header_size(buf: np.ndarray | bytes) -> tuple[int, int] | None:
    """``(width, height)`` by Pillow's lazy open (no pixel is decoded): every format Pillow
    identifies (JPEG with fill bytes or EXIF, PNG, BMP, WebP, TIFF, GIF, JPEG 2000, PNM, ...).
    None when Pillow does not recognise the bytes; :class:`_Bomb` when Pillow refuses to
    describe an image that large (over 2 × ``PIL.Image.MAX_IMAGE_PIXELS``)."""
    import io
    import re
    import warnings

    from PIL import Image

    data = buf if isinstance(buf, bytes | bytearray) else np.ascontiguousarray(buf).tobytes()
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":  # Pillow's WebP open allocates the canvas
        return _webp_size(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return int(im.size[0]), int(im.size[1])
    except Image.DecompressionBombError as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise _Bomb(f"{int(found.group(1)):,} pixels" if found else "too many pixels") from None
    except Exception:  # any header Pillow cannot parse: not an image personkit reads
        return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """The canvas size of a WebP file from its first chunk (Google's WebP container spec:
    ``VP8X`` canvas, ``VP8L`` lossless or ``VP8 `` lossy bitstream header)."""
    chunk, body = data[12:16], data[20:30]
    if chunk == b"VP8X" and len(body) >= 10:
        return (int.from_bytes(body[4:7], "little") + 1,
                int.from_bytes(body[7:10], "little") + 1)
    if chunk == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        return (int.from_bytes(body[6:8], "little") & 0x3FFF,
                int.from_bytes(body[8:10], "little") & 0x3FFF)
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
