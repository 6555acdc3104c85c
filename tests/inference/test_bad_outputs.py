"""Output paths that cannot be written and exported files that cannot be read are one-line
errors naming the path (exit status 2), never a raw traceback (issue #22, items 7 and 8)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from personkit.cli import main


def _one_line_error(capsys, *texts: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(t in err for t in texts), err
    return err


@pytest.fixture
def street(tmp_path):
    image = cv2.resize(np.random.default_rng(0).integers(0, 256, (6, 8, 3), np.uint8), (160, 120))
    cv2.imwrite(str(tmp_path / "street.jpg"), image)
    (tmp_path / "street.txt").write_text("10,5,50,85\n")
    return tmp_path / "street.jpg"


def test_output_paths_of_the_wrong_kind_are_named(tiny_checkpoint, street, tmp_path, capsys):
    a_file = tmp_path / "taken.txt"
    a_file.write_text("the user's file")
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    cases = [
        (["predict", str(tiny_checkpoint), str(street), "--out", str(a_file), "--no-progress"],
         str(a_file)),
        (["export", str(tiny_checkpoint), "--onnx", str(a_dir)], str(a_dir)),
        (["export", str(tiny_checkpoint), "--onnx", str(tmp_path / "m.onnx"), "--openvino",
          str(a_file)], str(a_file)),
        (["synth-mot", "--out", str(a_file)], str(a_file)),
    ]
    for argv, path in cases:
        assert main(argv) == 2, argv
        _one_line_error(capsys, path)
    assert a_file.read_text() == "the user's file"  # nothing replaced


def test_score_annotations_out_is_a_folder(tmp_path, capsys):
    from personkit.data.datasets.market_auto import AutoAnnotation, write_market_auto

    truth = tmp_path / "truth"
    joints = np.tile([[10.0, 20.0]], (16, 1))
    write_market_auto(truth, [AutoAnnotation("bounding_box_train/0001_c1s1_000001_00.jpg",
                                             joints, None, np.zeros((8, 4), np.uint8))])
    out = tmp_path / "scores"
    out.mkdir()
    assert main(["score-annotations", str(truth), str(truth), "--out", str(out)]) == 2
    _one_line_error(capsys, str(out))


def test_corrupt_exports_are_named(tiny_model, tmp_path, capsys):
    from personkit.inference.export import export_onnx, export_openvino

    onnx_path = export_onnx(tiny_model, tmp_path / "m.onnx")
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(onnx_path.read_bytes()[:5000])
    crops = tmp_path / "crops"
    crops.mkdir()
    cv2.imwrite(str(crops / "a.jpg"), np.zeros((64, 32, 3), np.uint8))
    assert main(["predict", str(truncated), str(crops), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    _one_line_error(capsys, "ONNX Runtime cannot read", str(truncated))

    pytest.importorskip("openvino")
    xml = export_openvino(tiny_model, tmp_path / "ov", onnx_path=onnx_path)
    bin_path = xml.with_suffix(".bin")
    data = bin_path.read_bytes()
    bin_path.write_bytes(data[: len(data) // 2])
    assert main(["predict", str(xml.parent), str(crops), "--out", str(tmp_path / "o2"),
                 "--no-progress"]) == 2
    _one_line_error(capsys, "OpenVINO cannot read", str(xml))
    bin_path.unlink()
    assert main(["predict", str(xml.parent), str(crops), "--out", str(tmp_path / "o3"),
                 "--no-progress"]) == 2
    _one_line_error(capsys, str(bin_path))
