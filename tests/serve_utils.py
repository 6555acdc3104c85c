"""A real `personkit serve` on 127.0.0.1 for the tests (uvicorn in a thread), and the
ground-truth boxes of a synthetic MOT frame."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np


def gt_boxes(seq: Path, frame: int) -> np.ndarray:
    """The ground-truth boxes of one frame (x1, y1, x2, y2, 0-based pixels), clipped to the
    frame; people less than 8 pixels wide inside it are left out."""
    from personkit.data.mot import read_seqinfo

    info = read_seqinfo(seq)
    w, h = int(info["imwidth"]), int(info["imheight"])
    gt = np.loadtxt(seq / "gt" / "gt.txt", delimiter=",")
    rows = gt[gt[:, 0] == frame]
    boxes = np.stack([rows[:, 2] - 1, rows[:, 3] - 1, rows[:, 2] - 1 + rows[:, 4],
                      rows[:, 3] - 1 + rows[:, 5]], axis=1)
    boxes = np.clip(boxes, 0, [w, h, w, h])
    return boxes[boxes[:, 2] - boxes[:, 0] >= 8]


class Server:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start(checkpoint, index_dir, **options) -> tuple[Server, object]:
    from personkit.index import PeopleIndex
    from personkit.inference import Predictor
    from personkit.serve.app import create_app
    from personkit.serve.service import Service
    from personkit.serve.settings import Limits

    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    limits = Limits(**{"max_upload_mb": 1.0, **options.pop("limits", {})})
    access = options.pop("access", None)
    service = Service(predictor, PeopleIndex.open(index_dir) if index_dir else None,
                      limits=limits, **options)
    return Server(create_app(service, access)), service
