"""Live cameras in the service (issue 36, items 1, 5 and 6): `personkit serve --camera` as a
real process tracks two synthetic cameras streamed over HTTP on 127.0.0.1 (MPEG-TS, paced in
real time) into its index while it serves search: people are found by attributes, camera,
time range and example while the cameras stream, each person of one camera in the other; a
camera that cannot connect is `failed` while the others run; killed with SIGKILL and started
again, the index holds every committed entry exactly once. Bad camera options are errors
naming the value; the stores write entries by id (an entry written again is there once); a
source's timestamps that jump keep capture times monotonic."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from live_cameras import place_detector, serve_camera, who

from personkit.cli import main

#: cam1 and cam2 show the same people, each always in the same place of its camera (so a
#: tracker never joins two people): (person, place, first frame, last frame) of each 40.
CAM1 = [("red", 0, 0, 7), ("green", 1, 12, 19)]
CAM2 = [("green", 0, 3, 10), ("red", 1, 15, 22)]
CAM3 = [("blue", 2, 0, 29)]  # stays in view (with nobody else: an untrained network's people
PERIOD = 30  # look alike, and its tracker would join the others' tracks to a running one)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`personkit serve` in a process of its own; its stderr in ``log``."""

    def __init__(self, argv: list[str], log: Path):
        self.port, self.log = _free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "personkit", "serve", *argv,
                                          "--port", str(self.port)], stdout=err, stderr=err,
                                         env=env)
        self.wait(lambda: self.get("/healthz").status_code == 200, "the server to start")

    def get(self, path: str):
        import httpx

        return httpx.get(self.url + path, timeout=10)

    def search(self, **form):
        import httpx

        r = httpx.post(self.url + "/search", data={"k": "1000", **form}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["hits"]

    def cameras(self) -> dict:
        return {c["name"]: c for c in self.get("/cameras").json()["cameras"]}

    def wait(self, ready, what: str, seconds: float = 90.0) -> None:
        deadline = time.monotonic() + seconds
        while True:
            assert self.proc.poll() is None, f"personkit serve exited:\n{self.log.read_text()}"
            try:
                if ready():
                    return
            except Exception:  # not listening yet
                pass
            assert time.monotonic() < deadline, (f"waited for {what}:\n{self.log.read_text()}"
                                                 f"\n{self.get('/cameras').text}")
            time.sleep(0.2)

    def kill(self, sig: int) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cameras():
    for module in ("av", "boxmot", "onnxruntime"):
        pytest.importorskip(module, reason="the tracking and export extras are not installed")
    served = [serve_camera(schedule, PERIOD) for schedule in (CAM1, CAM2, CAM3)]
    yield [url for url, _ in served]
    for _, server in served:
        server.shutdown()


def _kill_and_count(cameras, checkpoint, tmp_path, restart: bool) -> None:
    """Serve two streaming cameras and one that cannot connect, search while they stream,
    SIGKILL the server; then every entry seen before the kill is in the index once (read
    directly, or with ``restart`` through the same command started again)."""
    url1, url2, url3 = cameras
    index, log = tmp_path / "people", tmp_path / "serve.log"
    argv = ["--model", str(checkpoint), "--index", str(index), "--camera", f"cam1={url1}",
            "--camera", f"cam2={url2}", "--camera", f"cam3={url3}", "--camera", f"bad=http://127.0.0.1:{_free_port()}/x.ts",
            "--detector", str(place_detector(tmp_path / "det.onnx")),
            "--checkpoint-seconds", "1", "--engine", "torch", "--threads", "1"]
    served = Served(argv, log)
    served.wait(lambda: all(served.cameras()[c]["committed"] >= 1 for c in ("cam1", "cam2")),
                "an ended track of each camera in the index")
    health = served.cameras()
    assert health["cam1"]["state"] == health["cam2"]["state"] == "running"
    assert health["bad"]["state"] == "failed" and "cannot open" in health["bad"]["error"]
    assert health["cam3"]["tracks_live"] == 1 and health["cam1"]["frames"] > 0
    _search_while_streaming(served)
    _page_shows_the_cameras(served)
    before = {h["id"] for h in served.search()}
    served.kill(signal.SIGKILL)
    if not restart:
        from personkit.index.people import PeopleIndex

        ids = [m["id"] for m in PeopleIndex.open(index).store.vectors()[0]]
        assert len(ids) == len(set(ids)) and before <= set(ids)  # every entry once
        return
    again = Served(argv, log)  # the same command
    hits = again.search()
    assert len(hits) == len({h["id"] for h in hits}) == again.get("/healthz").json()[
        "index"]["entries"]  # every entry once
    assert before <= {h["id"] for h in hits}
    again.wait(lambda: again.cameras()["cam1"]["state"] == "running", "ingest to resume")
    again.kill(signal.SIGTERM)
    assert "personkit serve: stopped" in log.read_text()


@pytest.mark.slow  # timing-dependent: failed once in a fresh clone on a loaded 2-core machine
def test_live_cameras_are_searchable_while_they_stream_and_survive_a_kill(
        cameras, checkpoint, tmp_path):
    _kill_and_count(cameras, checkpoint, tmp_path, restart=False)


@pytest.mark.slow
def test_the_same_command_after_a_kill_finds_every_entry_once_and_ingests_on(
        cameras, checkpoint, tmp_path):
    """The whole of issue 36's check (about 40 s on 2 cores: two server starts)."""
    _kill_and_count(cameras, checkpoint, tmp_path, restart=True)


def _search_while_streaming(served: Served) -> None:
    """By camera, attributes, time range and example, while the cameras stream."""
    cam1 = served.search(where="camera=cam1")
    assert cam1 and {h["camera"] for h in cam1} == {"cam1"}
    running = served.search(where="camera=cam3")
    assert [who(served.get(h["thumbnail"]).content) for h in running] == ["blue"], \
        "the person who stays in view of cam3 is searchable"
    served.wait(lambda: [(h["id"], h["last_seen"] > running[0]["last_seen"]) for h in
                         served.search(where="camera=cam3")] == [(running[0]["id"], True)],
                "the running track's entry to grow in place")
    entry = cam1[0]
    gender = entry["attributes"]["gender"]["label"]
    assert entry["id"] in {h["id"] for h in served.search(where=f"gender={gender} camera=cam1")}
    inside = served.search(since=entry["first_seen"], until=entry["last_seen"])
    assert entry["id"] in {h["id"] for h in inside}
    assert all(h["last_seen"] >= entry["first_seen"] and h["first_seen"] <= entry["last_seen"]
               for h in inside)
    assert served.search(since="2099-01-01") == []
    for query in cam1[:2]:  # each person of cam1 is cam2's nearest of the same person
        nearest = served.search(entry=query["id"], where="camera=cam2", k="1")[0]
        assert who(served.get(nearest["thumbnail"]).content) == who(
            served.get(query["thumbnail"]).content)


def _page_shows_the_cameras(served: Served) -> None:
    """The web page's camera status (in Debian's chromium, where it and Playwright are)."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return
    if chromium is None:
        return
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(served.url + "/")
        page.wait_for_selector("#cameras-section:not([hidden])", timeout=30_000)
        rows = {r.split("\t")[0]: r.split("\t") for r in page.locator(
            "#camera-status tbody tr").all_inner_texts()}
        browser.close()
    assert rows["cam1"][1] == "running" and rows["bad"][1] == "failed"
    assert "cannot open" in rows["bad"][-1]


# ----------------------------------------------------------------- bad input, units


@pytest.mark.parametrize("argv, message", [
    (["--camera", "door"], "--camera 'door': expected NAME=SOURCE"),
    (["--camera", "=rtsp://x/y"], "expected NAME=SOURCE"),
    (["--camera", "a b=x.mp4"], "camera name 'a b'"),
    (["--camera", "door=a.mp4", "--camera", "door=rtsp://u:secret@cam/x"],
     "camera name 'door' is given twice (for a.mp4 and rtsp://u:***@cam/x)"),
    (["--camera", "door=a.mp4"], "live cameras need --index"),
])
def test_bad_camera_options_are_named_before_the_model_loads(argv, message, capsys):
    assert main(["serve", "--model", "no/such/model", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "secret" not in err


@pytest.mark.parametrize("text, message", [
    ("cameras:\n  - name: door\n    source: a.mp4\n    fps: 5\n",
     "camera 1 ('door'): unknown key 'fps'"),
    ("- name: door\n", "camera 1 ('door'): source: must be given"),
    ("- name: door\n  source: a.mp4\n  detector_score: high\n",
     "detector_score: 'high' is not a number"),
    ("cams:\n  - name: door\n", "unknown key 'cams'"),
    ("- name: a\n  source: a.mp4\n- name: a\n  source: b.mp4\n", "'a' is given twice"),
])
def test_a_bad_cameras_file_is_named(text, message, tmp_path):
    from personkit.serve.settings import camera_specs

    path = tmp_path / "cameras.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        camera_specs([], path)
    assert message in str(e.value)


def test_a_cameras_file_and_camera_options_add_up(tmp_path):
    from personkit.serve.settings import camera_specs

    path = tmp_path / "cameras.yaml"
    path.write_text("cameras:\n  - name: lobby\n    source: rtsp://cam2/s\n"
                    "    detector_score: 0.3\n    start_time: 2026-01-05T14:00:00Z\n")
    door, lobby = camera_specs(["door=clip.mp4"], path)
    assert (door.name, door.source, door.detector_score) == ("door", "clip.mp4", None)
    assert (lobby.name, lobby.detector_score, lobby.start_time[:16]) == (
        "lobby", 0.3, "2026-01-05T14:00")


def test_a_stream_needs_a_detector_and_the_index_is_made_for_the_model(checkpoint, tmp_path):
    from personkit.inference import Predictor
    from personkit.serve.ingest import Ingest, open_served_index
    from personkit.serve.settings import CameraSpec

    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    index = open_served_index(tmp_path / "new", predictor, live=True)
    assert index.info.model == predictor.model_id and index.store.count() == 0
    with pytest.raises(ValueError, match="camera 'door': rtsp://u:\\*\\*\\*@cam/x has no "
                                         "people of its own"):
        Ingest([(CameraSpec("door", "rtsp://u:pw@cam/x"), None)], predictor, index)
    with pytest.raises(ValueError, match="camera 'door': start_time 2026-01-05: a stream's"):
        Ingest([(CameraSpec("door", "rtsp://cam/x", start_time="2026-01-05"), object())],
               predictor, index)


def test_capture_times_stay_monotonic_when_timestamps_jump():
    from personkit.track.stream import CaptureClock

    clock = CaptureClock(10)
    times = [clock(s) for s in (0.0, 0.1, 0.2, 50.0, 50.1, 0.3, 0.4)]
    assert times == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert clock.jumps == 2
    live = CaptureClock(10)
    assert [live(s, e) for s, e in ((0.0, 0.0), (0.1, 0.1), (-7.0, 9.0), (-6.9, 9.1))] == \
        pytest.approx([0.0, 0.1, 9.0, 9.1])  # a reset stream: on from the wall clock


@pytest.mark.parametrize("backend", ["lancedb", "qdrant"])
def test_upsert_writes_entries_by_id_once(backend, tmp_path):
    import dataclasses

    from personkit.index.entries import Entry, IndexInfo
    from personkit.index.people import PeopleIndex

    if backend == "qdrant":
        pytest.importorskip("qdrant_client")
    info = IndexInfo("m", 4, {"gender": ["male", "female"]}, extra={"backend": backend})
    index = PeopleIndex.create_or_open(tmp_path / "idx", info)

    def entry(track: int, recording: str, last: float) -> Entry:
        return Entry("cam1", track, np.eye(4, dtype=np.float32)[track % 4],
                     {"gender": ("female", 0.9, 0.9)}, b"jpeg", 1, 10, 0.0, last,
                     recording=recording, first_seen="2026-01-05T14:00:00Z",
                     last_seen=f"2026-01-05T14:00:{int(last):02d}Z", time_source="wall_clock")

    index.add("cam1", [entry(7, "old", 3.0)], "old")
    index.upsert([entry(1, "r1", 1.0), entry(2, "r1", 2.0)])
    index.upsert([dataclasses.replace(entry(1, "r1", 5.0), last_frame=50),
                  entry(3, "r1", 3.0)])
    index.upsert([entry(1, "r1", 5.0)])  # written again: still once
    found = {h["id"]: h for h in index.search(k=100)["hits"]}
    assert sorted(found) == ["cam1/old:7", "cam1/r1:1", "cam1/r1:2", "cam1/r1:3"]
    assert found["cam1/r1:1"]["last_seen"].startswith("2026-01-05T14:00:05")
    assert index.store.count() == 4
    assert {r["recording"]: r["entries"] for r in index.store.recordings()} == {"old": 1,
                                                                                "r1": 3}
    assert index.get("cam1/r1:1").embedding.shape == (4,)


def test_a_live_camera_with_nobody_yet_is_no_error(tmp_path):
    """A service's live cameras write into the index: searching one that has nobody yet, or
    the index before its first person, finds nobody (the soak's client got 400 "empty" for
    its first seconds); a camera neither live nor in the index is still an error naming
    them, and an empty index searched without live cameras still says it is empty."""
    from personkit.index.entries import EmptyIndexError, FilterError, IndexInfo
    from personkit.index.people import PeopleIndex

    index = PeopleIndex.create_or_open(tmp_path / "idx", IndexInfo(
        "m", 4, {"gender": ["male", "female"]}))
    live = ["door", "lobby"]
    assert index.search(k=5, cameras=live)["hits"] == []
    assert index.search(np.ones(4, np.float32), "camera=door", k=5, cameras=live)["hits"] == []
    with pytest.raises(FilterError, match=r"camera source='yard'.*'door', 'lobby'"):
        index.search(where="camera=yard", cameras=live)
    with pytest.raises(EmptyIndexError, match="is empty"):
        index.search(where="camera=door")
