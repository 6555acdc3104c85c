"""Small files whose headers declare huge images (issue #32): each is a few hundred bytes, and
a decoder that trusted it would allocate gigabytes."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def png(width: int, height: int) -> bytes:
    """A PNG whose IHDR (with a valid checksum) declares ``width``×``height``."""
    real = cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes()
    ihdr = b"IHDR" + struct.pack(">II", width, height) + real[24:29]
    return real[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + real[33:]


def jpeg_with_fill(width: int, height: int, fill: int = 7) -> bytes:
    """A baseline JPEG declaring ``width``×``height``, with ``fill`` bytes ``FF`` before its
    SOF marker (legal padding that a naive segment walker stops at)."""
    real = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    sof = real.index(b"\xff\xc0")
    patched = real[:sof + 5] + struct.pack(">HH", height, width) + real[sof + 9:]
    return patched[:sof] + b"\xff" * fill + patched[sof:]


def tiff(width: int, height: int) -> bytes:
    """An uncompressed RGB TIFF header (one strip) declaring ``width``×``height``."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 2),
            (273, 4, 8 + 2 + 10 * 12 + 4), (277, 3, 3), (278, 4, height),
            (279, 4, 3 * width * height & 0xFFFFFFFF), (284, 3, 1)]
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3
                                             else struct.pack("<I", value))
        for tag, kind, value in tags) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 64


def webp_lossless(width: int, height: int) -> bytes:
    """A WebP (VP8L) whose bitstream header declares ``width``×``height`` (at most 16384)."""
    bits = (width - 1) | (height - 1) << 14
    chunk = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 32
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(chunk)) + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


HOSTILE = {"png": png(20000, 20000), "jpeg-fill": jpeg_with_fill(30000, 30000),
           "tiff": tiff(20000, 20000), "webp": webp_lossless(16000, 16000)}
