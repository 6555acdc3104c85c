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
    sizes (issue #22, item 15). PNG, JPEG and BMP headers agree with the decoded sizes."""
    import cv2

    from personkit.data.io import BadImageError, image_size, read_image, read_mask

    big = tmp_path / "big.png"  # a real 20000×20000 header; the pixel data need not follow
    header = cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes()
    big.write_bytes(header[:16] + (20000).to_bytes(4, "big") * 2 + header[24:])
    with pytest.raises(BadImageError, match=r"big\.png is 20000×20000 = 400,000,000 pixels"):
        read_image(big)
    with pytest.raises(BadImageError, match="PERSONKIT_MAX_IMAGE_PIXELS"):
        read_mask(big)
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for ext in (".png", ".jpg", ".bmp"):
        path = tmp_path / f"a{ext}"
        cv2.imwrite(str(path), image)
        assert image_size(np.fromfile(path, np.uint8)) == (53, 37), ext
        monkeypatch.setenv("PERSONKIT_MAX_IMAGE_PIXELS", str(53 * 37))
        assert read_image(path).shape == (37, 53, 3)  # exactly at the limit
        monkeypatch.setenv("PERSONKIT_MAX_IMAGE_PIXELS", str(53 * 37 - 1))
        with pytest.raises(BadImageError, match=f"a{ext}"):
            read_image(path)
