"""`POST /predict` under concurrent load: requests/s and latency of `personkit serve` with
dynamic batching on and off (the baseline, measured in the same run); with ``--overload``,
far more clients than the server admits (``--max-concurrency``), against the same server at
its capacity (the baseline).

The server runs as its own process (``personkit serve --model MODEL --port P --max-batch B``) on
127.0.0.1; a bounded local client (httpx, asyncio) keeps ``C`` requests in flight (1, 4 and
16) until ``--requests`` have been answered or ``--time-cap`` seconds have passed. Each request
uploads one 640×480 synthetic frame (JPEG) with the boxes of its people (``synth-mot --preset
street640``, ground truth), so the network runs on every person of the frame. Reported per
setting: requests/s, people/s, p50 and p95 latency; and the server's resident memory after the
run and at its peak (``/proc/PID/status`` VmRSS, VmHWM).

Overload (issue #32): one server started with ``--max-concurrency 8 --max-queue 8``; first
8 clients (its capacity: the baseline), then ``--overload-clients`` (64) clients, each sending
its next request as soon as it has an answer, or, after a 503, after the ``Retry-After`` it
was given (a well-behaved client). Reported for both: answered requests/s, people/s, p50 and
p95 latency of the answered ones, the share of 503s, and the server's peak memory growth.

Usage::

    python benchmarks/bench_serve.py RUN [--requests 96] [--time-cap 120]
        [--out benchmarks/results/serve.json]
    python benchmarks/bench_serve.py RUN --overload [--requests 400]
        [--out benchmarks/results/serve_overload.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from personkit.runtime import describe_machine, machine_info
from personkit.synth.mot import write_mot_sequence


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frames(n: int) -> list[tuple[bytes, str]]:
    """``n`` frames of a 640×480 sequence with the boxes of their people, as uploads."""
    seq = write_mot_sequence(Path(tempfile.mkdtemp()) / "street", "street640", seed=3)
    gt = np.loadtxt(seq / "gt" / "gt.txt", delimiter=",")
    out = []
    for t in range(20, 20 + 4 * n, 4):
        rows = gt[(gt[:, 0] == t) & (gt[:, 8] > 0.3)]
        boxes = np.stack([rows[:, 2] - 1, rows[:, 3] - 1, rows[:, 2] - 1 + rows[:, 4],
                          rows[:, 3] - 1 + rows[:, 5]], 1)
        boxes = np.clip(boxes, 0, [640, 480, 640, 480])
        boxes = boxes[boxes[:, 2] - boxes[:, 0] > 8]
        out.append(((seq / "img1" / f"{t:06d}.jpg").read_bytes(), json.dumps(boxes.tolist())))
    return out


def start_server(run: str, port: int, max_batch: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "personkit", "serve", run, "--port", str(port), "--device",
           "cpu", "--max-batch", str(max_batch), "--max-wait-ms", "5", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()}")
    raise RuntimeError("server did not start within 120 s")


async def load(url: str, uploads: list, concurrency: int, requests: int,
               cap: float) -> dict:
    """``concurrency`` clients send until ``requests`` have been answered (or for ``cap``
    seconds); a 503 is counted and its client waits the ``Retry-After`` it was given before
    sending again."""
    import httpx

    latencies, people, refused, sent = [], [], 0, 0
    start = time.perf_counter()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent, refused
        while sent - refused < requests and time.perf_counter() - start < cap:
            image, boxes = uploads[sent % len(uploads)]
            sent += 1
            t = time.perf_counter()
            r = await client.post(url, files={"image": image}, data={"boxes": boxes})
            if r.status_code == 503:
                refused += 1
                await asyncio.sleep(float(r.headers.get("retry-after", 1)))
                continue
            r.raise_for_status()
            latencies.append(time.perf_counter() - t)
            people.append(len(r.json()["people"]))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    wall = time.perf_counter() - start
    ms = sorted(1000 * x for x in latencies)
    return {"concurrency": concurrency, "requests": len(ms), "seconds": round(wall, 2),
            "requests_per_s": round(len(ms) / wall, 2),
            "people_per_s": round(sum(people) / wall, 1),
            "p50_ms": round(statistics.median(ms), 1),
            "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1),
            "refused_503": refused, "refused_share": round(refused / max(1, refused + len(ms)),
                                                           3)}


def overload(run: str, uploads: list, clients: int, requests: int, cap: float) -> dict:
    """The server at its capacity (8 clients, the baseline) and overloaded (``clients``)."""
    port = free_port()
    proc = start_server(run, port, 8, "--max-concurrency", "8", "--max-queue", "8")
    rows = []
    try:
        url = f"http://127.0.0.1:{port}/predict"
        asyncio.run(load(url, uploads, 8, 32, cap))  # warm-up at full batches
        for n in (8, clients):
            before = memory_mb(proc.pid)["VmRSS"]
            row = asyncio.run(load(url, uploads, n, requests, cap))
            row["peak_growth_mb"] = round(memory_mb(proc.pid)["VmHWM"] - before, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    rows[1]["throughput_vs_capacity"] = round(rows[1]["requests_per_s"]
                                              / rows[0]["requests_per_s"], 2)
    return {"max_concurrency": 8, "max_queue": 8, "rows": rows}


def memory_mb(pid: int) -> dict:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return {k: round(int(fields[k].split()[0]) / 1024, 1) for k in ("VmRSS", "VmHWM")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--requests", type=int, default=96)
    p.add_argument("--time-cap", type=float, default=120)
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--overload", action="store_true", help="the overload measurement")
    p.add_argument("--overload-clients", type=int, default=64)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    uploads = frames(24)
    result = {"machine": describe_machine(machine_info()), "run": args.run,
              "people_per_request": round(float(np.mean([len(json.loads(b)) for _, b in
                                                         uploads])), 2)}
    if args.overload:
        result["overload"] = overload(args.run, uploads, args.overload_clients,
                                      args.requests, args.time_cap)
    else:
        result["settings"] = batching(args.run, uploads, args.concurrency, args.requests,
                                      args.time_cap, result)
    print(json.dumps(result, indent=1))
    out = Path(args.out or f"benchmarks/results/serve{'_overload' * args.overload}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


def batching(run: str, uploads: list, concurrency: str, requests: int, cap: float,
             result: dict) -> list[dict]:
    """Batching off (``--max-batch 1``, the baseline) and on (8) at each concurrency."""
    settings = []
    for max_batch in (1, 8):
        port = free_port()
        proc = start_server(run, port, max_batch)
        try:
            url = f"http://127.0.0.1:{port}/predict"
            asyncio.run(load(url, uploads, 2, 8, cap))  # warm-up
            for c in (int(x) for x in concurrency.split(",")):
                row = asyncio.run(load(url, uploads, c, requests, cap))
                settings.append({"max_batch": max_batch, **row})
                print(json.dumps(settings[-1]), flush=True)
            result.setdefault("memory_mb", {})[f"max_batch={max_batch}"] = memory_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    off = {r["concurrency"]: r["requests_per_s"] for r in settings if r["max_batch"] == 1}
    for r in settings:
        r["ratio_vs_no_batching"] = round(r["requests_per_s"] / off[r["concurrency"]], 2)
    return settings


if __name__ == "__main__":
    main()
