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
