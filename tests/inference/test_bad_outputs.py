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
        (["predict", "-m", str(tiny_checkpoint), str(street), "--out", str(a_file),
          "--no-progress"],
         str(a_file)),
        (["export", "--model", str(tiny_checkpoint), "--onnx", str(a_dir)], str(a_dir)),
        (["export", "-m", str(tiny_checkpoint), "--onnx", str(tmp_path / "m.onnx"), "--openvino",
          str(a_file)], str(a_file)),
        (["synth-mot", "--out", str(a_file)], str(a_file)),
    ]
    for argv, path in cases:
        assert main(argv) == 2, argv
        _one_line_error(capsys, path)
    assert a_file.read_text() == "the user's file"  # nothing replaced


def test_score_annotations_out_that_is_a_file_is_named(tmp_path, capsys):
    from personkit.data.datasets.market_auto import AutoAnnotation, write_market_auto

    truth = tmp_path / "truth"
    joints = np.tile([[10.0, 20.0]], (16, 1))
    write_market_auto(truth, [AutoAnnotation("bounding_box_train/0001_c1s1_000001_00.jpg",
                                             joints, None, np.zeros((8, 4), np.uint8))])
    out = tmp_path / "scores.txt"  # --out takes a folder: a file there is an error
    out.write_text("the user's file")
    assert main(["score-annotations", str(truth), str(truth), "--out", str(out)]) == 2
    _one_line_error(capsys, str(out))
    assert out.read_text() == "the user's file"


def test_corrupt_exports_are_named(tiny_model, tmp_path, capsys):
    from personkit.inference.export import export_onnx, export_openvino

    onnx_path = export_onnx(tiny_model, tmp_path / "m.onnx")
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(onnx_path.read_bytes()[:5000])
    crops = tmp_path / "crops"
    crops.mkdir()
    cv2.imwrite(str(crops / "a.jpg"), np.zeros((64, 32, 3), np.uint8))
    assert main(["predict", "--model", str(truncated), str(crops), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    _one_line_error(capsys, "ONNX Runtime cannot read", str(truncated))

    pytest.importorskip("openvino")
    xml = export_openvino(tiny_model, tmp_path / "ov", onnx_path=onnx_path)
    bin_path = xml.with_suffix(".bin")
    data = bin_path.read_bytes()
    bin_path.write_bytes(data[: len(data) // 2])
    assert main(["predict", "--model", str(xml.parent), str(crops), "--out", str(tmp_path / "o2"),
                 "--no-progress"]) == 2
    _one_line_error(capsys, "OpenVINO cannot read", str(xml))
    bin_path.unlink()
    assert main(["predict", "--model", str(xml.parent), str(crops), "--out", str(tmp_path / "o3"),
                 "--no-progress"]) == 2
    _one_line_error(capsys, str(bin_path))


def test_an_undecodable_crop_is_skipped_and_named_not_fatal(tiny_checkpoint, tmp_path, capsys):
    """One bad file in a folder of crops costs that file, not the folder (issue #22, 14)."""
    import json

    crops = tmp_path / "crops"
    crops.mkdir()
    for name in ("a.jpg", "c.jpg"):
        cv2.imwrite(str(crops / name), np.full((64, 32, 3), 90, np.uint8))
    (crops / "b.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tiny_checkpoint), str(crops), "--out", str(out),
                 "--no-progress", "--no-vis"]) == 0
    assert "skipped 1 undecodable image(s): cannot decode image file" in capsys.readouterr().err
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["image"] for line in lines] == ["a", "c"]
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["skipped_images"]) == 1 and "b.jpg" in summary["skipped_images"][0]


def test_int8_calibration_data_is_checked_before_the_model_is_read(tmp_path, capsys,
                                                                   monkeypatch):
    """``eval --int8 --calib-data EMPTY`` fails at once, not after evaluation started."""
    import personkit.deploy.engines as engines

    def never(*args, **kwargs):
        raise AssertionError("the model was read before the options were checked")

    monkeypatch.setattr(engines, "load_model_and_config", never)
    (tmp_path / "empty").mkdir()
    for calib, text in ((tmp_path / "empty", "no images"), (tmp_path / "nope", "nope")):
        assert main(["eval", "--model", str(tmp_path), "--engine", "onnxruntime", "--int8",
                     "--calib-data", str(calib)]) == 2
        _one_line_error(capsys, text)
