"""`personkit serve` as users start it (its own process, the CLI) under 100 concurrent
requests, and stopped by SIGTERM while busy (issue #32)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import cv2
import httpx
import numpy as np
import pytest

CONCURRENCY, QUEUE, REQUESTS = 8, 8, 100
#: Each request: a 1200×1200 frame with 24 boxes of 400×900 pixels. Unbounded, the part
#: maps alone (at box size) would take 24 × 0.36 MB per request, the crops and results of
#: 100 requests several hundred MB; bounded, a request holds its frame (4.3 MB decoded) and
#: one batch of crops.
SIDE, BOXES = 1200, 24
#: The server's peak resident memory may grow by at most this much under the load: the
#: frames of the requests in work (CONCURRENCY × 2 copies × 4.3 MB), their bounded part
#: maps and crops, and the allocator's slack (Python, torch and glibc arenas).
PEAK_GROWTH_MB = 250


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


@pytest.fixture(scope="module")
def server(checkpoint, index_dir):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "personkit", "serve", str(checkpoint), "--index", str(index_dir),
         "--port", str(port), "--device", "cpu", "--threads", "1",
         "--max-concurrency", str(CONCURRENCY), "--max-queue", str(QUEUE)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
    proc.url = url
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def upload(i: int, n_boxes: int = BOXES) -> tuple[bytes, np.ndarray]:
    """Request ``i``'s frame and boxes (each request its own boxes: answers cannot mix)."""
    rng = np.random.default_rng(i)
    small = rng.integers(0, 256, (12, 12, 3), np.uint8)
    frame = cv2.resize(small, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)
    x = rng.uniform(0, SIDE - 400, n_boxes).round(1)
    y = rng.uniform(0, SIDE - 900, n_boxes).round(1)
    boxes = np.stack([x, y, x + 400, y + 900], axis=1)
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes(), boxes


async def burst(url: str, n: int,
                n_boxes: int = BOXES) -> list[tuple[np.ndarray, httpx.Response | Exception]]:
    """``n`` requests at once from one bounded client (n connections)."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def one(i: int):
            data, boxes = upload(i, n_boxes)
            try:
                return boxes, await client.post("/predict", files={"image": data},
                                                data={"boxes": json.dumps(boxes.tolist())})
            except httpx.HTTPError as e:
                return boxes, e

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_100_concurrent_requests_are_answered_200_or_503_none_lost_or_mixed(server):
    asyncio.run(burst(server.url, 2))  # warm up: the first forward passes allocate
    warm = status_kb(server.pid, "VmRSS")
    answers = asyncio.run(burst(server.url, REQUESTS))
    statuses = [r.status_code for _, r in answers]
    assert set(statuses) <= {200, 503} and len(statuses) == REQUESTS
    assert statuses.count(200) >= CONCURRENCY + QUEUE  # the admitted ones all got answers
    for boxes, r in answers:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and "busy" in r.json()["error"]
            continue
        got = np.array([p["box"] for p in r.json()["people"]])
        np.testing.assert_allclose(got, boxes, atol=0.01)  # its own boxes, in order
    growth_mb = (status_kb(server.pid, "VmHWM") - warm) / 1024
    print(f"{statuses.count(200)} answered, {statuses.count(503)} refused; "
          f"peak +{growth_mb:.0f} MB")
    assert growth_mb < PEAK_GROWTH_MB, f"peak memory grew by {growth_mb:.0f} MB"
    metrics = httpx.get(f"{server.url}/metrics").text
    refused = statuses.count(503)
    assert f'personkit_refused_total{{route="/predict"}} {float(refused)}' in metrics or (
        refused == 0 and "personkit_refused_total{" not in metrics)


def test_sigterm_stops_a_busy_server_within_seconds(server):
    """16 requests of 256 people each (4,096 crops, 25 s of work on one core) are admitted;
    SIGTERM one second in stops the server within seconds: the batch in work ends after its
    current forward pass, the waiting requests get 503."""
    async def busy_then_term():
        task = asyncio.ensure_future(burst(server.url, 40, n_boxes=256))
        await asyncio.sleep(1.0)  # requests in work and waiting
        server.send_signal(signal.SIGTERM)
        return await task

    start = time.monotonic()
    answers = asyncio.run(busy_then_term())
    server.wait(timeout=30)  # raises if the server is still running
    stopped = time.monotonic() - start
    # uvicorn shuts down, then raises the signal it caught again: killed by SIGTERM, after
    # the application's own shutdown ran
    output = server.stdout.read()
    assert server.returncode == -signal.SIGTERM and "personkit serve: stopped" in output, output
    for _, r in answers:  # answered, refused or cut: none hangs
        assert isinstance(r, Exception) or r.status_code in (200, 503), r.text
    kinds = [type(r).__name__ if isinstance(r, Exception) else r.status_code for _, r in answers]
    print(f"stopped {stopped:.1f} s after the burst began: {sorted(map(str, kinds))}")
