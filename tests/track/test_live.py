"""Live sources (personkit/track/live.py): a video served over HTTP on 127.0.0.1 by the test is
tracked in real time (newest frame wins, drops counted, per-frame JSON lines); a stream that
stalls ends the run cleanly; a missing camera or an unreachable stream is named."""

import functools
import http.server
import json
import threading
import time

import numpy as np
import pytest
from fake_detectors import torchvision_layout

from personkit.cli import main


@pytest.fixture
def serve(tmp_path):
    """``serve(handler_class or None)`` -> the base URL of an HTTP server on 127.0.0.1
    serving ``tmp_path`` (or answering with the given handler)."""
    servers = []

    def start(handler=None):
        handler = handler or functools.partial(_QuietHandler, directory=str(tmp_path))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def write_ts(path, frames, rate=25):
    """An MPEG-TS H.264 file (decodable while it arrives, as a live stream is)."""
    import av

    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 256, 192, "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _frames(sequence, repeat):
    from personkit.inference.sources import read_image

    images = [read_image(p) for p in sorted((sequence / "img1").iterdir())]
    return [im for _ in range(repeat) for im in images]


def test_a_stream_is_tracked_in_real_time_and_reports_dropped_frames(
        extra, sequence, run_dir, tmp_path, serve):
    write_ts(tmp_path / "live.ts", _frames(sequence, 10))  # 120 frames
    detector = torchvision_layout(tmp_path / "det.onnx", [[20, 40, 60, 150]], [0.9])
    url = serve() + "/live.ts"
    out, lines = tmp_path / "out", tmp_path / "people.jsonl"
    assert main(["track", "-m", str(run_dir), url, "--detector", str(detector), "--out", str(out),
                 "--jsonl", str(lines), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    live = summary["live"]
    assert live["decoded_frames"] == 120 and live["end"] == "the stream ended"
    # decoding outruns the network here: the newest frame wins, and every frame is accounted
    assert live["dropped_frames"] > 0
    assert summary["frames"] + live["dropped_frames"] == live["decoded_frames"]
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert len(records) == summary["frames"]
    numbers = [r["frame"] for r in records]
    assert numbers == sorted(set(numbers)) and numbers[-1] == 120  # gaps where frames dropped
    # each frame's time in the stream: its timestamp from the first frame's (25 frames/s)
    assert [r["source_time"] for r in records] == pytest.approx([(n - 1) / 25 for n in numbers],
                                                                abs=1e-6)
    tracks = json.loads((out / "tracks.json").read_text())
    assert tracks["frame_rate"] == 25 and all(
        f["time"] == pytest.approx((f["frame"] - 1) / 25, abs=1e-6)
        for t in tracks["tracks"] for f in t["frames"])
    assert all(p["track_id"] >= 1 and "attributes" in p for r in records[3:] for p in r["people"])
    rows = np.loadtxt(out / "results.txt", delimiter=",", ndmin=2)
    assert set(rows[:, 0].astype(int)) <= set(numbers)


class _Stall(http.server.BaseHTTPRequestHandler):
    """Sends the first half of the stream, then nothing."""

    payload = b""

    def do_GET(self):  # noqa: N802 - the http.server API
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.end_headers()
        self.wfile.write(self.payload[:len(self.payload) // 2])
        self.wfile.flush()
        time.sleep(4)

    def log_message(self, *args):
        pass


def test_a_stalled_stream_ends_cleanly_with_what_arrived(extra, sequence, tmp_path, serve):
    from personkit.track.live import LiveFrames

    _Stall.payload = write_ts(tmp_path / "s.ts", _frames(sequence, 4)).read_bytes()
    live = LiveFrames(serve(_Stall) + "/s.ts", timeout=1.0, queue_size=100)
    got = [t for t, _ in live]
    assert got and got == list(range(1, len(got) + 1)) and len(got) < 48
    assert live.end and live.dropped == 0


def test_missing_camera_and_unreachable_stream_are_named(extra, run_dir, tmp_path, capsys):
    detector = str(torchvision_layout(tmp_path / "det.onnx", [[1, 1, 9, 9]], [0.9]))
    assert main(["track", "--model", str(run_dir), "/dev/video97", "--detector", detector, "--out",
                 str(tmp_path / "a")]) == 2
    assert "camera not found: /dev/video97" in capsys.readouterr().err
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["track", "--model", str(run_dir), f"http://127.0.0.1:{port}/x.ts", "--detector",
                 detector, "--out", str(tmp_path / "b")]) == 2
    assert f"cannot open live source http://127.0.0.1:{port}/x.ts" in capsys.readouterr().err
    assert main(["track", "--model", str(run_dir), "rtsp://127.0.0.1:1/x", "--out",
                 str(tmp_path / "c")]) == 2
    assert "needs a detector" in capsys.readouterr().err


def test_a_streams_password_is_never_written_or_shown(extra, sequence, run_dir, tmp_path,
                                                      serve, capsys):
    """Issue #37, item 5: ``http://user:PASSWORD@host/...`` opens the stream, but the password
    is in no file the index writes (names, tracks.json, entries) and in no output; an error
    about the address shows it as ``***``."""
    write_ts(tmp_path / "live.ts", _frames(sequence, 1))
    detector = torchvision_layout(tmp_path / "det.onnx", [[20, 40, 60, 150]], [0.9])
    url = serve().replace("http://", "http://viewer:Pw0rdS3cret@") + "/live.ts"
    index = tmp_path / "idx"
    assert main(["index", str(index), url, "--detector", str(detector), "-m", str(run_dir),
                 "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "Pw0rdS3cret" not in printed.out + printed.err
    for path in index.rglob("*"):
        if path.is_file():
            assert b"Pw0rdS3cret" not in path.read_bytes(), path
        assert "Pw0rdS3cret" not in str(path) and "viewer" not in str(path)
    missing = url.replace("/live.ts", "/none.ts")
    assert main(["track", "-m", str(run_dir), missing, "--detector", str(detector), "--out",
                 str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Pw0rdS3cret" not in err and "viewer:***@127.0.0.1" in err
