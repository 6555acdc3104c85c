"""Image and label decoding (personkit.data.io)."""

from __future__ import annotations

import numpy as np
import pytest
from native import write_array

from personkit.data.io import BadImageError, mat_items, mat_scalar, read_image, read_mask


def test_read_image_is_rgb(tmp_path):
    image = np.zeros((4, 5, 3), dtype=np.uint8)
    image[..., 0] = 200  # red
    out = read_image(write_array(tmp_path / "a.png", image))
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out, image)


def test_read_image_grayscale_becomes_three_channels(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    out = read_image(write_array(tmp_path / "g.png", gray))
    assert out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out[..., 1], gray)


def test_read_image_errors_name_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(BadImageError, match="broken.jpg"):
        read_image(bad)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(BadImageError, match="empty.jpg"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(BadImageError, match="not found.*missing.jpg"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):  # what inference callers catch
        read_image(tmp_path / "missing.jpg")


def test_one_image_reader_for_training_and_inference():
    from personkit.inference import sources

    assert sources.read_image is read_image


def test_read_mask_grayscale_rgb_and_palette(tmp_path):
    from PIL import Image

    labels = np.array([[0, 14, 15], [19, 255, 5]], dtype=np.uint8)
    np.testing.assert_array_equal(read_mask(write_array(tmp_path / "g.png", labels)), labels)
    rgb = np.stack([labels, labels // 2, np.zeros_like(labels)], -1)  # first channel = ids
    np.testing.assert_array_equal(read_mask(write_array(tmp_path / "c.png", rgb)), labels)
    palette = Image.fromarray(labels, mode="P")
    palette.putpalette([(i * 37) % 256 for i in range(768)])  # colours unrelated to the ids
    palette.save(tmp_path / "p.png")
    out = read_mask(tmp_path / "p.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels)


def test_read_mask_rejects_16_bit_and_garbage(tmp_path):
    deep = write_array(tmp_path / "d.png", np.full((2, 2), 300, dtype=np.uint16))
    with pytest.raises(BadImageError, match="d.png.*8-bit"):
        read_mask(deep)
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(BadImageError, match="x.png"):
        read_mask(tmp_path / "x.png")


def test_mat_accessors():
    assert mat_items(np.array([])) == [] and mat_items(None) == [] and mat_items("") == []
    assert mat_items(3.0) == [3.0] and mat_items(np.array([1, 2])) == [1, 2]
    assert mat_scalar(np.array([])) is None and mat_scalar("1") == 1.0
    assert mat_scalar(np.uint8(2)) == 2.0 and mat_scalar(np.array([[4.5]])) == 4.5


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    """A 20000×20000 PNG would take gigabytes decoded: its header is read first, and a file
    over the limit (``PERSONKIT_MAX_IMAGE_PIXELS``, settable) is an error naming it and the
    sizes (issue #22, item 15). The header's size agrees with the decoded one in every
    format the decoder reads."""
    import io

    import cv2
    from hostile_images import png
    from PIL import Image

    from personkit.data.io import BadImageError, image_size, read_image, read_mask

    big = tmp_path / "big.png"  # a real 20000×20000 header; the pixel data need not follow
    big.write_bytes(png(20000, 20000))
    with pytest.raises(BadImageError, match=r"big\.png declares 400,000,000 pixels"):
        read_image(big)
    with pytest.raises(BadImageError, match="PERSONKIT_MAX_IMAGE_PIXELS"):
        read_mask(big)
    (tmp_path / "mid.png").write_bytes(png(9000, 8000))  # over 64 MP, under Pillow's own limit
    with pytest.raises(BadImageError, match=r"mid\.png is 9000×8000 = 72,000,000 pixels"):
        read_image(tmp_path / "mid.png")
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".webp", ".tif", ".ppm"):
        path = tmp_path / f"a{ext}"
        cv2.imwrite(str(path), image)
        assert image_size(np.fromfile(path, np.uint8)) == (53, 37), ext
        monkeypatch.setenv("PERSONKIT_MAX_IMAGE_PIXELS", str(53 * 37))
        assert read_image(path).shape == (37, 53, 3)  # exactly at the limit
        monkeypatch.setenv("PERSONKIT_MAX_IMAGE_PIXELS", str(53 * 37 - 1))
        with pytest.raises(BadImageError, match=f"a{ext}"):
            read_image(path)
        monkeypatch.delenv("PERSONKIT_MAX_IMAGE_PIXELS")
    for fmt in ("GIF", "JPEG2000"):  # formats OpenCV may or may not decode: sized all the same
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, fmt)
        assert image_size(buf.getvalue()) == (53, 37), fmt


@pytest.mark.parametrize("kind", ["png", "jpeg-fill", "tiff", "webp"])
def test_hostile_headers_are_refused_before_any_decoding(kind):
    """A few hundred bytes that declare a 16000² to 30000² image (a JPEG with fill bytes
    before its SOF marker, a TIFF, a WebP: issue #32) are refused from the header, without
    allocating the image."""
    import resource

    from hostile_images import HOSTILE

    from personkit.data.io import ImageTooLargeError, decode_image

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageTooLargeError, match=r"upload (declares|is) .* more than the "
                                                 r"limit of 40,000,000"):
        decode_image(HOSTILE[kind], "upload", 40_000_000)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def test_bytes_whose_size_cannot_be_read_are_not_decoded():
    from personkit.data.io import BadImageError, decode_image

    for data in (b"hello, not an image", b"RIFF\x10\x00\x00\x00WEBPVP8Lxx", b"II*\x00"):
        with pytest.raises(BadImageError, match="cannot decode the upload"):
            decode_image(data, "the upload")
