"""A real `personkit serve` on 127.0.0.1 for the service and browser tests: uvicorn in a
thread of the test process, the tiny untrained model, and a small index of person crops cut
from a synthetic MOT sequence (real thumbnails). Skips when the serve extra is missing."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from serve_utils import gt_boxes, start


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="session")
def serve_extra():
    for module in ("fastapi", "uvicorn", "multipart", "prometheus_client", "lancedb", "httpx"):
        pytest.importorskip(module, reason="the serve extra is not installed")


@pytest.fixture(scope="session")
def scene_dir(tmp_path_factory) -> Path:
    from personkit.synth.mot import write_mot_sequence

    return write_mot_sequence(tmp_path_factory.mktemp("mot") / "tiny-0", "tiny", seed=0)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, serve_extra):
    from tiny_models import make_model, save_model

    return save_model(make_model(), tmp_path_factory.mktemp("ckpt") / "model.safetensors")


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory, scene_dir, checkpoint) -> Path:
    """An index of the people of frames 4, 6 and 8 (crops, thumbnails real JPEGs)."""
    from personkit.data.io import read_image
    from personkit.index.build import index_sources
    from personkit.inference import Predictor

    crops = tmp_path_factory.mktemp("crops") / "door"
    crops.mkdir()
    for frame in (4, 6, 8):
        image = read_image(scene_dir / "img1" / f"{frame:06d}.jpg")
        for k, (x1, y1, x2, y2) in enumerate(gt_boxes(scene_dir, frame).astype(int)):
            crop = image[max(0, y1):y2, max(0, x1):x2]
            cv2.imwrite(str(crops / f"{frame:02d}_{k}.jpg"), crop[:, :, ::-1])
    path = tmp_path_factory.mktemp("index") / "people"
    index_sources(path, [str(crops)], Predictor.from_checkpoint(checkpoint, "cpu"), crops=True)
    return path


@pytest.fixture(scope="module")
def server(checkpoint, index_dir):
    srv, service = start(checkpoint, index_dir, max_batch=8, max_wait_ms=100)
    srv.service, srv.checkpoint = service, checkpoint
    yield srv
    srv.stop()
