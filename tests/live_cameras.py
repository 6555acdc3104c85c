"""Synthetic live cameras for the live-ingest tests: MPEG-TS streams over HTTP on 127.0.0.1,
encoded as they are sent and paced in real time, that show people (coloured figures) walking
into fixed places of the frame and away again, and an ONNX "detector" that finds a person in
a place while that place's marker (a white block at the bottom of the frame) is lit.

Each person's torso has a colour of its own (:data:`PEOPLE`), so a thumbnail tells who it is
(:func:`who`); the same person looks the same in every camera."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import numpy as np
import torch

#: The frame, frames per second and the places people stand in (x1, y1, x2, y2).
WIDTH, HEIGHT, RATE = 240, 144, 10
PLACES = ((16, 16, 56, 120), (96, 16, 136, 120), (176, 16, 216, 120))
#: Each place's marker: rows and columns of the block lit while someone stands there.
MARKERS = tuple((slice(134, 142), slice(x1 + 12, x1 + 28)) for x1, _, _, _ in PLACES)
#: Torso and leg colours of each person.
PEOPLE = {"red": ((220, 40, 40), (40, 40, 160)), "green": ((40, 200, 60), (90, 90, 90)),
          "blue": ((40, 60, 220), (200, 200, 200))}


def draw(frame: np.ndarray, person: str, place: int) -> None:
    """A figure of ``person`` in ``place`` of ``frame`` (head, torso, legs), its marker lit."""
    x1, y1, x2, y2 = PLACES[place]
    torso, legs = PEOPLE[person]
    frame[y1:y1 + 18, x1 + 12:x2 - 12] = (230, 190, 160)
    frame[y1 + 18:y1 + 60, x1:x2] = torso
    frame[y1 + 60:y2, x1 + 4:x2 - 4] = legs
    frame[MARKERS[place]] = 255


def frame_at(schedule: list[tuple[str, int, int, int]], i: int, period: int) -> np.ndarray:
    """Frame ``i`` of a camera: ``schedule`` rows ``(person, place, first, last)`` are frame
    numbers within each ``period`` (the schedule repeats)."""
    frame = np.full((HEIGHT, WIDTH, 3), 24, np.uint8)
    for person, place, first, last in schedule:
        if first <= i % period <= last:
            draw(frame, person, place)
    return frame


def who(jpeg: bytes) -> str:
    """Whose thumbnail ``jpeg`` is: the person whose torso colour is nearest its middle."""
    import cv2

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    h, w = image.shape[:2]
    middle = image[int(0.35 * h):int(0.5 * h), int(0.4 * w):int(0.6 * w)].reshape(-1, 3)
    colour = np.median(middle, axis=0)
    return min(PEOPLE, key=lambda p: float(np.abs(colour - PEOPLE[p][0]).sum()))


class Camera(http.server.BaseHTTPRequestHandler):
    """Streams its ``schedule`` (set on a subclass) at ``rate`` frames/s while the client
    reads, in real time; each connection's wall-clock start (frame 0's) in ``connections``."""

    schedule: list[tuple[str, int, int, int]] = []
    period, rate = 40, RATE
    stop = threading.Event()
    connections: list[float] = []

    def do_GET(self):  # noqa: N802 - the http.server API
        import av

        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.end_headers()
        try:
            with av.open(self.wfile, "w", format="mpegts",
                         options={"flush_packets": "1"}) as out:
                stream = out.add_stream("libx264", rate=self.rate, options={
                    "tune": "zerolatency", "preset": "ultrafast", "g": str(self.rate)})
                stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
                start = time.monotonic()
                self.connections.append(time.time())
                i = 0
                while not self.stop.is_set():
                    frame = av.VideoFrame.from_ndarray(frame_at(self.schedule, i, self.period),
                                                       format="rgb24")
                    frame.pts = i
                    for packet in stream.encode(frame):
                        out.mux(packet)
                    i += 1
                    time.sleep(max(0.0, start + i / self.rate - time.monotonic()))
        except Exception:  # the client went away (PyAV says so in its own words)
            pass

    def log_message(self, *args):
        pass


def serve_camera(schedule: list[tuple[str, int, int, int]], period: int = 40,
                 rate: int = RATE) -> tuple[str, object]:
    """A camera streaming ``schedule`` at ``http://127.0.0.1:PORT/live.ts``; its server (call
    ``shutdown()``; its handler class, with the ``connections``, is ``server.camera``)."""
    handler = type("ThisCamera", (Camera,), {"schedule": schedule, "period": period,
                                             "rate": rate, "stop": threading.Event(),
                                             "connections": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    original = server.shutdown

    def shutdown():
        handler.stop.set()
        original()
        server.server_close()

    server.shutdown = shutdown
    server.camera = handler
    return f"http://127.0.0.1:{server.server_address[1]}/live.ts", server


class PlaceDetector(torch.nn.Module):
    """torchvision's detector layout: a person box in each place, scored by how lit its
    marker is."""

    def forward(self, image: torch.Tensor):
        scores = torch.stack([image[:, rows, cols].mean() for rows, cols in MARKERS])
        boxes = torch.tensor(PLACES, dtype=torch.float32) + image.mean() * 0
        return boxes, torch.ones(len(PLACES), dtype=torch.int64), scores


def place_detector(path: Path) -> Path:
    """The ONNX file of :class:`PlaceDetector`."""
    from fake_detectors import export

    return export(PlaceDetector(), path, torch.zeros(3, HEIGHT, WIDTH),
                  ["boxes", "labels", "scores"], {1: "height", 2: "width"})
