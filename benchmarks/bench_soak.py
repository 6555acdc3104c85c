"""Live cameras for half an hour (issue 36, item 7): `personkit serve` ingesting synthetic
cameras while a client searches; its memory, open files, drops, freshness, search latency,
and every person of the ground truth in the index once.

Cameras: ``--cameras`` (4) synthetic cameras streamed over HTTP on 127.0.0.1 (MPEG-TS encoded
as sent, paced in real time at ``--rate`` frames/s: 5, Frigate's default detection rate), each
showing two people who walk into their place of the frame for 2 s and away for 6 s
(``tests/live_cameras.py``: coloured figures, and an ONNX "detector" that finds a person in a
place while its marker is lit). The server: ``personkit serve --model MODEL --index TMP
--camera camK=URL ... --detector DET`` with its defaults otherwise (checkpoints every 5 s), as
its own process.

A bounded client (one request at a time) meanwhile asks, per camera in turn, for its people
seen in the last 3 minutes (newest first) and, every fifth request, an example search (an
entry as the example) or an attribute filter: every answer's latency is kept. Every 10 s it
samples the server's resident memory (``/proc/PID/status`` VmRSS), open files
(``/proc/PID/fd``) and threads.

Reported: RSS over time (plot) and its growth after warm-up (the first fifth of the run, at
most 5 minutes); open files at warm-up and at the end; per camera frames read, tracked and
dropped, reconnects, time jumps; freshness, from the moment the camera sent the last frame in
which a person was seen (the connection's start, from the camera server, plus the entry's last
frame number / rate) to the first answer showing the entry with that last frame (so it counts
the tracker's lost-track buffer, 1 s, the write and the client's polling); search p50/p95;
and against the synthetic ground truth, each appearance of a person (2 s in its place) that
began after the first 10 s of its connection and ended 5 s before the server was stopped: with
no entry (lost), with one (found once) or with several (split into several tracks), besides
entries that match no appearance and entry ids written twice (rows of the store against
distinct ids). Goals: RSS growth <= 10 %, open files constant, freshness p95 <= 10 s, search
p95 <= 100 ms, nobody lost or duplicated.

Usage::

    python benchmarks/bench_soak.py [--model runs/demo/run] [--minutes 30]
        [--out benchmarks/results/soak.json] [--plot benchmarks/results/soak_rss.png]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from personkit.runtime import describe_machine, machine_info  # before torch: its defaults

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic cameras and their detector
from live_cameras import PEOPLE, place_detector, serve_camera  # noqa: E402

#: Seconds between samples of memory and open files.
SAMPLE_SECONDS = 10.0
#: A camera's period (s), and when each of its two people stands in its place (s).
PERIOD, STAYS = 8, ((0, 2), (4, 6))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def schedules(cameras: int, rate: int) -> list[list[tuple[str, int, int, int]]]:
    """Camera k: two people (of the palette, in turn) in places 0 and 1, 2 s each per 8 s."""
    names = list(PEOPLE)
    return [[(names[(k + i) % len(names)], i, a * rate, b * rate - 1)
             for i, (a, b) in enumerate(STAYS)] for k in range(cameras)]


def proc_sample(pid: int) -> dict:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            "threads": int(fields["Threads"]), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


class Client:
    """The bounded client: one request at a time; latencies and when each entry was first
    seen with each last frame."""

    def __init__(self, url: str, cameras: list[str]):
        import httpx

        self.http, self.url, self.cameras = httpx.Client(timeout=60), url, cameras
        self.latency: list[float] = []
        self.seen: dict[tuple[str, int], float] = {}  # (id, last frame) -> first seen
        self.errors: Counter[str] = Counter()  # "status: error" -> answers
        self.n = 0

    def search(self, **form) -> list[dict]:
        start = time.perf_counter()
        r = self.http.post(self.url + "/search", data=form)
        self.latency.append(time.perf_counter() - start)
        if r.status_code != 200:
            self.errors[f"{r.status_code}: {r.json().get('error', '')[:60]}"] += 1
            return []
        return r.json()["hits"]

    def step(self) -> None:
        """One request: a camera's recent people, or every fifth an example or a filter."""
        self.n += 1
        camera = self.cameras[self.n % len(self.cameras)]
        now = time.time()
        hits = self.search(where=f"camera={camera}", since="3m", k="200")
        for h in hits:
            self.seen.setdefault((h["id"], h["last_frame"]), now)
        if self.n % 5 == 0 and hits:
            if self.n % 10 == 0:
                self.search(entry=hits[0]["id"], k="10")
            else:
                label = hits[0]["attributes"]["gender"]["label"]
                self.search(where=f"gender={label}", since="10m", k="20")

    def get(self, path: str) -> dict:
        return self.http.get(self.url + path).json()


def start_server(model: str, index: Path, detector: Path, urls: list[str], port: int,
                 log: Path) -> subprocess.Popen:
    cams = [a for k, url in enumerate(urls) for a in ("--camera", f"cam{k + 1}={url}")]
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "personkit", "serve", "--model", model,
                                 "--index", str(index), "--port", str(port), "--detector",
                                 str(detector), *cams], stdout=err, stderr=err)
    return proc


def wait_up(client: Client, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"personkit serve exited:\n{log.read_text()}")
        try:
            client.get("/healthz")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def run(args: argparse.Namespace, work: Path) -> dict:
    rate, cams = args.rate, args.cameras
    plan = schedules(cams, rate)
    served = [serve_camera(s, PERIOD * rate, rate) for s in plan]
    detector = place_detector(work / "det.onnx")
    port, log = free_port(), work / "serve.log"
    proc = start_server(args.model, work / "people", detector, [u for u, _ in served], port,
                        log)
    client = Client(f"http://127.0.0.1:{port}", [f"cam{k + 1}" for k in range(cams)])
    samples: list[dict] = []
    try:
        wait_up(client, proc, log)
        began = time.time()
        end, next_sample = began + 60 * args.minutes, began
        while time.time() < end:
            if time.time() >= next_sample:
                samples.append({"t": round(time.time() - began, 1), **proc_sample(proc.pid)})
                next_sample += SAMPLE_SECONDS
            client.step()
            time.sleep(args.pause)
        health = client.get("/cameras")["cameras"]
        stopped = time.time()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        for _, server in served:
            server.shutdown()
    out = {"minutes": args.minutes, "cameras": cams, "rate": rate, "model": args.model,
           "server_exit": code, "samples": samples, "health": health,
           "search": latency(client.latency), "search_errors": dict(client.errors)}
    out.update(check(work / "people", plan, [s.camera.connections for _, s in served], rate,
                     began, stopped, client.seen))
    out["goals"] = goals(out)
    return out


def latency(seconds: list[float]) -> dict:
    ms = np.sort(np.asarray(seconds) * 1000)
    return {"requests": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "max_ms": round(float(ms[-1]), 1)}


def appearances(schedule, start: float, rate: int, first: float, last: float) -> list[tuple]:
    """(first frame, last frame) numbers (1-based in the connection begun at ``start``) of
    each stay sent between wall times ``first`` and ``last``."""
    period = PERIOD * rate
    out = []
    for m in range(int((last - start) * rate / period) + 2):
        for _, _, a, b in schedule:
            lo, hi = m * period + a, m * period + b
            if start + lo / rate >= first and start + hi / rate <= last:
                out.append((lo + 1, hi + 1))
    return out


def check(index_path: Path, plan, connections, rate: int, began: float, stopped: float,
          seen: dict) -> dict:
    """The index against the ground truth, and freshness (module docstring)."""
    from personkit.index.people import PeopleIndex

    index = PeopleIndex.open(index_path)
    hits = index.search(k=1_000_000)["hits"]
    rows = index.store.count()
    found = {"appearances": 0, "lost": 0, "once": 0, "split": 0, "unmatched": 0}
    fresh = []
    for k, schedule in enumerate(plan):
        camera = f"cam{k + 1}"
        mine = [h for h in hits if h["camera"] == camera]
        recordings = sorted({h["recording"] for h in mine})
        for j, recording in enumerate(recordings):
            start = connections[k][j]
            until = connections[k][j + 1] if j + 1 < len(connections[k]) else stopped
            entries = [h for h in mine if h["recording"] == recording]
            stays = appearances(schedule, start, rate, start + 10, until - 5)
            spans = [(h["first_frame"], h["last_frame"]) for h in entries]
            for lo, hi in stays:
                n = sum(1 for f, last in spans if f <= hi and last >= lo)
                found["appearances"] += 1
                found["lost" if n == 0 else "once" if n == 1 else "split"] += 1
            found["unmatched"] += sum(1 for f, last in spans if not any(
                f <= hi + rate and last >= lo - rate for lo, hi in
                appearances(schedule, start, rate, start, until)))
            for h in entries:
                when = seen.get((h["id"], h["last_frame"]))
                if when is not None:
                    fresh.append(when - (start + (h["last_frame"] - 1) / rate))
    fresh_s = np.asarray(fresh)
    return {"entries": len(hits), "store_rows": rows,
            "duplicated_ids": rows - len({h["id"] for h in hits}), "ground_truth": found,
            "freshness": {"entries": len(fresh),
                          "p50_s": round(float(np.percentile(fresh_s, 50)), 2),
                          "p95_s": round(float(np.percentile(fresh_s, 95)), 2),
                          "max_s": round(float(fresh_s.max()), 2)} if len(fresh) else None}


def goals(out: dict) -> dict:
    samples = out["samples"]
    warm = min(300.0, 0.2 * out["minutes"] * 60)
    after = [s for s in samples if s["t"] >= warm] or samples
    growth = (after[-1]["rss_mb"] - after[0]["rss_mb"]) / after[0]["rss_mb"]
    minutes = (after[-1]["t"] - after[0]["t"]) / 60
    # open files: the median of the first and of the last minute after warm-up (a compaction
    # holds a few more for a moment)
    fds = [int(np.median([s["fds"] for s in after if abs(s["t"] - t) <= 60]))
           for t in (after[0]["t"] + 30, after[-1]["t"] - 30)]
    gt = out["ground_truth"]
    return {"warm_up_s": warm, "rss_after_warm_up_mb": after[0]["rss_mb"],
            "rss_end_mb": after[-1]["rss_mb"], "rss_growth": round(growth, 3),
            "rss_mb_per_minute": round((after[-1]["rss_mb"] - after[0]["rss_mb"])
                                       / max(minutes, 1e-9), 2),
            "rss_growth_ok": growth <= 0.10,
            "fds": fds, "fds_max": max(s["fds"] for s in after),
            "fds_constant": fds[0] == fds[1],
            "freshness_ok": bool(out["freshness"]) and out["freshness"]["p95_s"] <= 10,
            "search_ok": out["search"]["p95_ms"] <= 100,
            "no_loss_or_duplicate": gt["lost"] == 0 and gt["split"] == 0
            and out["duplicated_ids"] == 0}


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] / 60 for s in out["samples"]]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(t, [s["rss_mb"] for s in out["samples"]], label="resident memory (MB)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MB")
    ax.axvline(out["goals"]["warm_up_s"] / 60, color="grey", ls=":", label="end of warm-up")
    right = ax.twinx()
    right.plot(t, [s["fds"] for s in out["samples"]], color="tab:orange", label="open files")
    right.set_ylabel("open files")
    ax.set_title(f"personkit serve, {out['cameras']} cameras at {out['rate']} frames/s")
    fig.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "runs" / "demo" / "run"))
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--rate", type=int, default=5)
    p.add_argument("--pause", type=float, default=0.2, help="seconds between requests")
    p.add_argument("--out", default="benchmarks/results/soak.json")
    p.add_argument("--plot", default="benchmarks/results/soak_rss.png")
    args = p.parse_args()
    machine = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        out = run(args, Path(tmp))
    out["machine"] = describe_machine(machine)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    plot(out, Path(args.plot))
    summary = {k: out[k] for k in ("search", "freshness", "ground_truth", "duplicated_ids",
                                   "goals")}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
